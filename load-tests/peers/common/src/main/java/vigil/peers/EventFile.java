package vigil.peers;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Reads a generated NDJSON stream into memory before any engine is timed. */
public final class EventFile {
  private EventFile() {}

  public static List<Event> read(Path path) throws IOException {
    // Strings are shared: ten million events name only a million cards and a few types.
    Map<String, String> shared = new HashMap<>();
    List<Event> events = new ArrayList<>();
    JsonFactory json = new JsonFactory();
    try (BufferedReader reader = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
      long seq = 0;
      for (String line; (line = reader.readLine()) != null; ) {
        ++seq;
        if (line.isBlank()) continue;
        events.add(parse(json, line, seq, shared));
      }
    }
    return events;
  }

  private static Event parse(JsonFactory json, String line, long seq, Map<String, String> shared)
      throws IOException {
    Event event = new Event();
    event.seq = seq;
    try (JsonParser parser = json.createParser(line)) {
      if (parser.nextToken() != JsonToken.START_OBJECT) {
        throw new IOException("line " + seq + ": not a JSON object");
      }
      while (parser.nextToken() == JsonToken.FIELD_NAME) {
        String field = parser.currentName();
        JsonToken value = parser.nextToken();
        switch (field) {
          case "ts" -> event.ts = parser.getLongValue();
          case "amount" -> event.amount = parser.getDoubleValue();
          case "card_id" -> event.cardId = shared.computeIfAbsent(parser.getText(), s -> s);
          case "type" -> event.type = shared.computeIfAbsent(parser.getText(), s -> s);
          case "country" -> event.country = shared.computeIfAbsent(parser.getText(), s -> s);
          case "card_present" -> event.cardPresent = value == JsonToken.VALUE_TRUE;
          default -> parser.skipChildren();
        }
      }
    }
    return event;
  }
}
