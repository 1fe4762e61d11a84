package vigil.peers.esper;

import com.espertech.esper.common.client.EPCompiled;
import com.espertech.esper.common.client.EventBean;
import com.espertech.esper.common.client.configuration.Configuration;
import com.espertech.esper.compiler.client.CompilerArguments;
import com.espertech.esper.compiler.client.EPCompilerProvider;
import com.espertech.esper.runtime.client.EPDeployment;
import com.espertech.esper.runtime.client.EPEventService;
import com.espertech.esper.runtime.client.EPRuntime;
import com.espertech.esper.runtime.client.EPRuntimeProvider;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import vigil.peers.Event;
import vigil.peers.Harness;
import vigil.peers.MatchWriter;

/**
 * Esper: EPL pattern statements in a context partitioned by card, on an external clock that
 * follows event time (the clock moves to an event's time before the event is sent, so a
 * window ending at that time closes first: `within` is exclusive, as in vigil and Flink).
 */
public final class EsperHarness implements Harness.Engine {
  /** Time to run the clock on after the last event, so every window closes. */
  private static final long END_OF_INPUT_MS = 24L * 3600 * 1000;

  private List<Event> events;
  private EPRuntime runtime;

  public static void main(String[] args) throws Exception {
    Harness.main("esper", new EsperHarness(), args);
  }

  /** A rule as one EPL pattern and how its tags become the match's stages. */
  private record Rule(String annotations, String pattern, String[][] stagesAndTags) {}

  private static Rule rule(String id) throws Harness.Unsupported {
    return switch (id) {
      // The first small charge starts the run and the window; the repetition collects the
      // further small charges until the large one. Overlapping matches and the partial
      // matches sharing their events are dropped, as skip_past_last_event does.
      case "card-testing" -> new Rule(
          "@SuppressOverlappingMatches @DiscardPartialsOnMatch",
          "every s1=Ev(type='payment' and amount < 5) -> "
              + "([2:] s=Ev(type='payment' and amount < 5) until l=Ev(type='payment' and amount > 500))"
              + " where timer:within(10 min)",
          new String[][] {{"small", "s1", "s"}, {"large", "l"}});
      case "login-payment-transfer" -> new Rule(
          "",
          "every a=Ev(type='login') -> "
              + "(b=Ev(type='payment' and amount > 1000) -> c=Ev(type='transfer'))"
              + " where timer:within(30 min)",
          new String[][] {{"login", "a"}, {"payment", "b"}, {"transfer", "c"}});
      case "rising-payments" -> throw new Harness.Unsupported(
          "an EPL pattern's repetition cannot compare an event with the one it took before");
      // The quiet period runs from the payment to the end of the login's window (the interval
      // takes seconds).
      case "login-payment-no-logout" -> new Rule(
          "",
          "every a=Ev(type='login') -> "
              + "(b=Ev(type='payment' and not cardPresent and amount > 200) where timer:within(10 min)) -> "
              + "(timer:interval((a.ts + 600000 - b.ts) / 1000.0) and not Ev(type='logout'))",
          new String[][] {{"login", "a"}, {"payment", "b"}});
      default -> throw new Harness.Unsupported("no EPL pattern for rule " + id);
    };
  }

  @Override
  public void prepare(String id, List<Event> loaded, MatchWriter out) throws Exception {
    events = loaded;
    Rule rule = rule(id);
    Configuration config = new Configuration();
    config.getCommon().addEventType("Ev", Event.class);
    config.getRuntime().getThreading().setInternalTimerEnabled(false);
    String epl = "create context PerCard partition by cardId from Ev;\n"
        + "@name('match') context PerCard select * from pattern " + rule.annotations()
        + "[" + rule.pattern() + "];\n";
    EPCompiled compiled = EPCompilerProvider.getCompiler().compile(epl, new CompilerArguments(config));
    runtime = EPRuntimeProvider.getRuntime("vigil-peer", config);
    if (!loaded.isEmpty()) runtime.getEventService().advanceTime(loaded.get(0).ts);
    EPDeployment deployment = runtime.getDeploymentService().deploy(compiled);
    runtime.getDeploymentService()
        .getStatement(deployment.getDeploymentId(), "match")
        .addListener((matched, removed, statement, rt) -> {
          for (EventBean bean : matched) write(bean, rule, out);
        });
  }

  private static void write(EventBean bean, Rule rule, MatchWriter out) {
    Map<String, List<Event>> stages = new LinkedHashMap<>();
    for (String[] stageAndTags : rule.stagesAndTags()) {
      List<Event> taken = new ArrayList<>();
      for (int i = 1; i < stageAndTags.length; ++i) {
        Object value = bean.get(stageAndTags[i]);
        if (value instanceof Event event) {
          taken.add(event);
        } else if (value instanceof Event[] repeated) {
          taken.addAll(Arrays.asList(repeated));
        }
      }
      stages.put(stageAndTags[0], taken);
    }
    out.write(stages.values().iterator().next().get(0).cardId, stages);
  }

  @Override
  public void run() {
    EPEventService service = runtime.getEventService();
    Harness.startClock();
    long now = service.getCurrentTime();
    for (Event event : events) {
      if (event.ts > now) {
        now = event.ts;
        service.advanceTime(now);
      }
      service.sendEventBean(event, "Ev");
    }
    service.advanceTime(now + END_OF_INPUT_MS);
    Harness.stopClock();
    runtime.destroy();
  }
}
