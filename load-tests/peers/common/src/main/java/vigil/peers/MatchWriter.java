package vigil.peers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Writes matches in vigil's match shape ({"pattern","key","match":{stage:[events]}}).
 *
 * <p>While an engine is timed, a match is written with event line numbers in place of events
 * (cheap, and the same cost for every engine). {@link #close} then puts the original input
 * lines in their place, outside the timed section.
 */
public final class MatchWriter implements AutoCloseable {
  private final String pattern;
  private final Path out;
  private final Path draft;
  private final BufferedWriter writer;
  private final StringBuilder line = new StringBuilder(256);
  private long matches;

  public MatchWriter(String pattern, Path out) throws IOException {
    this.pattern = pattern;
    this.out = out;
    this.draft = out.resolveSibling(out.getFileName() + ".seq");
    this.writer = Files.newBufferedWriter(draft, StandardCharsets.UTF_8);
  }

  /** One match: stage names and, for each, the events it took, in order. */
  public void write(String key, Map<String, List<Event>> stages) {
    line.setLength(0);
    line.append("{\"key\":\"");
    for (int i = 0; i < key.length(); ++i) {
      char c = key.charAt(i);
      if (c == '"' || c == '\\') line.append('\\');
      line.append(c);
    }
    line.append("\",\"match\":{");
    boolean firstStage = true;
    for (Map.Entry<String, List<Event>> stage : stages.entrySet()) {
      if (stage.getValue().isEmpty()) continue;
      if (!firstStage) line.append(',');
      firstStage = false;
      line.append('"').append(stage.getKey()).append("\":[");
      boolean firstEvent = true;
      for (Event event : stage.getValue()) {
        if (!firstEvent) line.append(',');
        firstEvent = false;
        line.append(event.seq);
      }
      line.append(']');
    }
    line.append("}}\n");
    try {
      writer.append(line);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    ++matches;
  }

  public long matches() {
    return matches;
  }

  /** Ends the timed output; call {@link #resolve} afterwards. */
  @Override
  public void close() throws IOException {
    writer.close();
  }

  /** Ends a run that wrote nothing (the engine cannot express the rule). */
  public void discard() throws IOException {
    writer.close();
    Files.deleteIfExists(draft);
  }

  /** Rewrites the draft with the original event lines of {@code events}, into the output. */
  public void resolve(Path events) throws IOException {
    ObjectMapper mapper = new ObjectMapper();
    Set<Long> wanted = new HashSet<>();
    try (BufferedReader reader = Files.newBufferedReader(draft, StandardCharsets.UTF_8)) {
      for (String text; (text = reader.readLine()) != null; ) {
        mapper.readTree(text).get("match").forEach(list -> list.forEach(n -> wanted.add(n.asLong())));
      }
    }
    Map<Long, JsonNode> original = new HashMap<>();
    try (BufferedReader reader = Files.newBufferedReader(events, StandardCharsets.UTF_8)) {
      long seq = 0;
      for (String text; (text = reader.readLine()) != null; ) {
        if (wanted.contains(++seq)) original.put(seq, mapper.readTree(text));
      }
    }
    try (BufferedReader reader = Files.newBufferedReader(draft, StandardCharsets.UTF_8);
        BufferedWriter resolved = Files.newBufferedWriter(out, StandardCharsets.UTF_8)) {
      for (String text; (text = reader.readLine()) != null; ) {
        ObjectNode draftMatch = (ObjectNode) mapper.readTree(text);
        ObjectNode match = mapper.createObjectNode();
        match.put("pattern", pattern);
        match.set("key", draftMatch.get("key"));
        ObjectNode stages = match.putObject("match");
        draftMatch.get("match").fields().forEachRemaining(stage -> {
          ArrayNode list = stages.putArray(stage.getKey());
          stage.getValue().forEach(n -> list.add(original.get(n.asLong())));
        });
        resolved.write(mapper.writeValueAsString(match));
        resolved.newLine();
      }
    }
    Files.delete(draft);
  }
}
