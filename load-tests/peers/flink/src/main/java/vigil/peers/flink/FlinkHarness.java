package vigil.peers.flink;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.cep.CEP;
import org.apache.flink.cep.functions.PatternProcessFunction;
import org.apache.flink.cep.nfa.aftermatch.AfterMatchSkipStrategy;
import org.apache.flink.cep.pattern.Pattern;
import org.apache.flink.cep.pattern.conditions.IterativeCondition;
import org.apache.flink.cep.pattern.conditions.SimpleCondition;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.DiscardingSink;
import org.apache.flink.streaming.api.functions.source.SourceFunction;
import org.apache.flink.util.Collector;
import vigil.peers.Event;
import vigil.peers.Harness;
import vigil.peers.MatchWriter;

/**
 * Flink CEP (DataStream API) on a local environment with parallelism 1, in event time with
 * the same out-of-orderness as vigil's default (none), on the heap state backend. Object
 * reuse is on: the best setting Flink offers, since the source never reuses an event.
 */
public final class FlinkHarness implements Harness.Engine {
  // Operators are serialized into the job; they reach the events and the writer through
  // these fields, which the local environment's task threads share with main().
  private static List<Event> events;
  private static MatchWriter writer;

  private StreamExecutionEnvironment env;

  public static void main(String[] args) throws Exception {
    Harness.main("flink-cep", new FlinkHarness(), args);
  }

  @Override
  public void prepare(String rule, List<Event> loaded, MatchWriter out) throws Exception {
    events = loaded;
    writer = out;
    Pattern<Event, ?> pattern = pattern(rule);
    env = StreamExecutionEnvironment.createLocalEnvironment(1);
    env.getConfig().enableObjectReuse();
    CEP.pattern(
            env.addSource(new ListSource())
                .returns(Event.class)
                .assignTimestampsAndWatermarks(
                    WatermarkStrategy.<Event>forBoundedOutOfOrderness(Duration.ZERO)
                        .withTimestampAssigner((event, previous) -> event.ts))
                .keyBy(event -> event.cardId),
            pattern)
        .process(new WriteMatch())
        .addSink(new DiscardingSink<>());
  }

  @Override
  public void run() throws Exception {
    env.execute("vigil peer benchmark");
  }

  private static Pattern<Event, ?> pattern(String rule) throws Harness.Unsupported {
    return switch (rule) {
      case "card-testing" ->
          Pattern.<Event>begin("small", AfterMatchSkipStrategy.skipPastLastEvent())
              .where(SimpleCondition.of(e -> e.type.equals("payment") && e.amount < 5))
              .timesOrMore(3)
              .followedBy("large")
              .where(SimpleCondition.of(e -> e.type.equals("payment") && e.amount > 500))
              .within(Duration.ofMinutes(10));
      case "login-payment-transfer" ->
          Pattern.<Event>begin("login")
              .where(SimpleCondition.of(e -> e.type.equals("login")))
              .followedBy("payment")
              .where(SimpleCondition.of(e -> e.type.equals("payment") && e.amount > 1000))
              .followedBy("transfer")
              .where(SimpleCondition.of(e -> e.type.equals("transfer")))
              .within(Duration.ofMinutes(30));
      case "rising-payments" ->
          Pattern.<Event>begin("probe", AfterMatchSkipStrategy.skipPastLastEvent())
              .where(SimpleCondition.of(e -> e.type.equals("payment") && e.amount < 20))
              .followedBy("rising")
              .where(new RisingPayment())
              .oneOrMore()
              .followedBy("large")
              .where(SimpleCondition.of(e -> e.type.equals("payment") && e.amount > 1000))
              .within(Duration.ofMinutes(10));
      case "login-payment-no-logout" ->
          Pattern.<Event>begin("login")
              .where(SimpleCondition.of(e -> e.type.equals("login")))
              .followedBy("payment")
              .where(SimpleCondition.of(
                  e -> e.type.equals("payment") && !e.cardPresent && e.amount > 200))
              .notFollowedBy("logout")
              .where(SimpleCondition.of(e -> e.type.equals("logout")))
              .within(Duration.ofMinutes(10));
      default -> throw new Harness.Unsupported("no Flink pattern for rule " + rule);
    };
  }

  /** A payment larger than the last one the loop took (any payment for the first). */
  private static final class RisingPayment extends IterativeCondition<Event> {
    @Override
    public boolean filter(Event event, Context<Event> ctx) throws Exception {
      if (!event.type.equals("payment")) return false;
      Event last = null;
      for (Event taken : ctx.getEventsForPattern("rising")) last = taken;
      return last == null || event.amount > last.amount;
    }
  }

  private static final class ListSource implements SourceFunction<Event> {
    private volatile boolean running = true;

    @Override
    public void run(SourceContext<Event> ctx) {
      Harness.startClock();
      for (Event event : events) {
        if (!running) return;
        ctx.collect(event);
      }
    }

    @Override
    public void cancel() {
      running = false;
    }
  }

  private static final class WriteMatch extends PatternProcessFunction<Event, Void> {
    @Override
    public void processMatch(Map<String, List<Event>> match, Context ctx, Collector<Void> out) {
      writer.write(match.values().iterator().next().get(0).cardId, match);
    }

    // Called after the end of input has fired every window, so the last match is out.
    @Override
    public void close() {
      Harness.stopClock();
    }
  }
}
