package vigil.peers.siddhi;

import io.siddhi.core.SiddhiAppRuntime;
import io.siddhi.core.SiddhiManager;
import io.siddhi.core.stream.input.InputHandler;
import io.siddhi.core.stream.output.StreamCallback;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import vigil.peers.Event;
import vigil.peers.Harness;
import vigil.peers.MatchWriter;

/**
 * Siddhi: a Siddhi app with one pattern query in a partition by card, in playback mode
 * (time follows the events' timestamps, so `within` is event time).
 */
public final class SiddhiHarness implements Harness.Engine {
  /** Siddhi selects a fixed set of attributes; a counted stage reports at most this many. */
  private static final int MAX_REPEATED = 16;

  private List<Event> events;
  private SiddhiManager manager;
  private SiddhiAppRuntime app;
  private InputHandler input;

  public static void main(String[] args) throws Exception {
    Harness.main("siddhi", new SiddhiHarness(), args);
  }

  /**
   * A rule as a Siddhi pattern query. Each stage is selected as `<stage>_<i>` attributes
   * holding event line numbers: one for a single event, MAX_REPEATED (and one to check) for a
   * counted one.
   */
  private record Rule(String pattern, String[][] stages) {}

  private static Rule rule(String id) throws Harness.Unsupported {
    return switch (id) {
      case "card-testing" -> new Rule(
          "every e1=Ev[type == 'payment' and amount < 5]<3:> -> "
              + "e2=Ev[type == 'payment' and amount > 500] within 10 min",
          new String[][] {{"small", "e1", "counted"}, {"large", "e2"}});
      case "login-payment-transfer" -> new Rule(
          "every e1=Ev[type == 'login'] -> e2=Ev[type == 'payment' and amount > 1000] -> "
              + "e3=Ev[type == 'transfer'] within 30 min",
          new String[][] {{"login", "e1"}, {"payment", "e2"}, {"transfer", "e3"}});
      case "rising-payments" -> new Rule(
          "every e1=Ev[type == 'payment' and amount < 20] -> "
              + "e2=Ev[type == 'payment' and (e2[last].amount is null or amount > e2[last].amount)]<1:> -> "
              + "e3=Ev[type == 'payment' and amount > 1000] within 10 min",
          new String[][] {{"probe", "e1"}, {"rising", "e2", "counted"}, {"large", "e3"}});
      case "login-payment-no-logout" -> throw new Harness.Unsupported(
          "Siddhi's absence (not ... for T) waits a fixed time after the event before it,"
              + " not until the first event's window ends");
      default -> throw new Harness.Unsupported("no Siddhi query for rule " + id);
    };
  }

  private static String select(Rule rule) {
    List<String> attributes = new ArrayList<>();
    for (String[] stage : rule.stages()) {
      if (stage.length == 3) {
        // One more than is reported, to notice a stage that took too many to report.
        for (int i = 0; i <= MAX_REPEATED; ++i) {
          attributes.add(stage[1] + "[" + i + "].seq as " + stage[0] + "_" + i);
        }
      } else {
        attributes.add(stage[1] + ".seq as " + stage[0] + "_0");
      }
    }
    return String.join(", ", attributes);
  }

  @Override
  public void prepare(String id, List<Event> loaded, MatchWriter out) throws Exception {
    events = loaded;
    Rule rule = rule(id);
    String siddhiApp = "@app:playback\n"
        + "define stream Ev (seq long, amount double, cardId string, type string, country string,"
        + " cardPresent bool);\n"
        + "partition with (cardId of Ev)\nbegin\n"
        + "  from " + rule.pattern() + "\n"
        + "  select " + select(rule) + "\n"
        + "  insert into Matches;\n"
        + "end;\n";
    manager = new SiddhiManager();
    app = manager.createSiddhiAppRuntime(siddhiApp);
    app.addCallback("Matches", new StreamCallback() {
      @Override
      public void receive(io.siddhi.core.event.Event[] matched) {
        for (io.siddhi.core.event.Event match : matched) write(match.getData(), rule, out);
      }
    });
    input = app.getInputHandler("Ev");
    app.start();
  }

  private void write(Object[] selected, Rule rule, MatchWriter out) {
    Map<String, List<Event>> stages = new LinkedHashMap<>();
    int column = 0;
    for (String[] stage : rule.stages()) {
      int width = stage.length == 3 ? MAX_REPEATED : 1;
      List<Event> taken = new ArrayList<>();
      for (int i = 0; i < width; ++i, ++column) {
        if (selected[column] instanceof Long seq) taken.add(bySeq(seq));
      }
      if (stage.length == 3 && selected[column++] != null) {
        throw new IllegalStateException("stage " + stage[0] + " took more than " + MAX_REPEATED
            + " events; raise MAX_REPEATED");
      }
      stages.put(stage[0], taken);
    }
    out.write(stages.values().iterator().next().get(0).cardId, stages);
  }

  private Event bySeq(long seq) {
    // The generator writes no blank lines, so line n is the (n-1)th event.
    Event event = events.get((int) (seq - 1));
    if (event.seq != seq) throw new IllegalStateException("blank lines in the event file");
    return event;
  }

  @Override
  public void run() throws Exception {
    Harness.startClock();
    long last = 0;
    for (Event e : events) {
      input.send(e.ts, new Object[] {e.seq, e.amount, e.cardId, e.type, e.country, e.cardPresent});
      last = e.ts;
    }
    // Playback time moves only with events: one that no rule takes, a day later, closes
    // every window.
    input.send(last + 24L * 3600 * 1000, new Object[] {0L, 0.0, "", "end-of-input", "", false});
    Harness.stopClock();
    app.shutdown();
    manager.shutdown();
  }
}
