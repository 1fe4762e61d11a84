package vigil.peers;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What every peer harness shares: its command line, the loaded events, the clock and the
 * result line compare.sh reads.
 *
 * <pre>
 *   java -cp ... vigil.peers.X --rule RULE --events FILE --out FILE
 * </pre>
 *
 * Timing runs from the first event handed to the engine to the last match written after the
 * end of input (windows closed), the way `vigil replay` is timed; JVM start, reading the
 * file and building the engine's rule are outside it.
 */
public final class Harness {
  /** Thrown by an engine for a rule it cannot express; the table reports it. */
  public static final class Unsupported extends Exception {
    public Unsupported(String why) {
      super(why);
    }
  }

  /** One engine: runs a rule over the events, writing every match to the writer. */
  public interface Engine {
    /** Builds the rule; not timed. Throws Unsupported if the engine cannot express it. */
    void prepare(String rule, List<Event> events, MatchWriter out) throws Exception;

    /**
     * Feeds every event and flushes the end of input. Calls {@link #startClock} as the first
     * event goes in and {@link #stopClock} once the last match is out, so engine start-up and
     * shut-down stay outside the time.
     */
    void run() throws Exception;
  }

  // Static because Flink runs the timed operators as deserialized copies (in this JVM).
  private static final AtomicLong startNanos = new AtomicLong();
  private static final AtomicLong stopNanos = new AtomicLong();

  private Harness() {}

  public static void startClock() {
    startNanos.compareAndSet(0, System.nanoTime());
  }

  public static void stopClock() {
    stopNanos.set(System.nanoTime());
  }

  public static void main(String engineName, Engine engine, String[] args) throws Exception {
    String rule = null;
    Path events = null;
    Path out = null;
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--rule" -> rule = args[i + 1];
        case "--events" -> events = Path.of(args[i + 1]);
        case "--out" -> out = Path.of(args[i + 1]);
        default -> throw new IllegalArgumentException("unknown argument " + args[i]);
      }
    }
    if (rule == null || events == null || out == null || args.length % 2 != 0) {
      System.err.println("usage: --rule RULE --events FILE --out FILE");
      System.exit(2);
    }
    List<Event> loaded = EventFile.read(events);
    MatchWriter writer = new MatchWriter(rule, out);
    try {
      engine.prepare(rule, loaded, writer);
    } catch (Unsupported e) {
      writer.discard();
      System.out.printf("RESULT engine=%s rule=%s unsupported=\"%s\"%n", engineName, rule, e.getMessage());
      return;
    }
    engine.run();
    writer.close();
    if (startNanos.get() == 0 || stopNanos.get() < startNanos.get()) {
      throw new IllegalStateException(engineName + " did not start and stop the clock");
    }
    double seconds = (stopNanos.get() - startNanos.get()) / 1e9;
    writer.resolve(events);
    System.out.printf("RESULT engine=%s rule=%s events=%d seconds=%.3f events_per_s=%.0f matches=%d%n",
        engineName, rule, loaded.size(), seconds, loaded.size() / seconds, writer.matches());
  }
}
