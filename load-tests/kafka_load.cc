// vigil-kafka-load: produces NDJSON events to a Kafka topic and measures what vigil makes of
// them: the produce-to-alert latency of every alert read back read_committed.
//
//   vigil-kafka-load --brokers B --topic T --alerts-topic A --events FILE
//                    [--rate R] [--duration S] [--warmup S] [--settle S] [--timeline 1]
//                    [--key-field F]
//
// Every event gets "sent_at":<epoch ms> (its produce time) after its opening '{'; an alert's
// latency is the time it is read (committed) less the latest sent_at among its events.
// --rate R produces R events/s (0: as fast as librdkafka takes them) for --duration seconds
// (or the whole file once, whichever ends first) after --warmup seconds produced the same way
// whose alerts are not counted (connections, the broker's JIT, first allocations); alerts are
// read for --settle seconds more.
// --key-field F: each record's key is the event's string field F (a card, an account), as a
// producer that keeps each entity's events in order would send them; without it records have
// no key, and librdkafka fills one partition's batch at a time.
// Prints: produced, events/s, alerts, p50, p99, max latency (ms). On stderr: p50 and p99 by
// pattern, and of the part up to the alert's detected_at (sent to matched; the rest is the way
// out). --timeline 1 also prints each second's alerts (by the time their last event was sent)
// and their largest latency, whole and up to detection, to tell a steady cost from a pause and
// the input side from the output side.

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "vigil-kafka-load: %s\n", why.c_str());
  std::exit(2);
}

rd_kafka_t* Client(rd_kafka_type_t type, const std::vector<std::pair<std::string, std::string>>& settings) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char error[512];
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK) Die(error);
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, error, sizeof error);
  if (!rk) Die(error);
  return rk;
}

// The latest "sent_at" in `alert`, 0 if none.
int64_t LatestSentAt(std::string_view alert) {
  int64_t latest = 0;
  static constexpr std::string_view kField = "\"sent_at\":";
  for (size_t at = alert.find(kField); at != std::string_view::npos; at = alert.find(kField, at + 1)) {
    latest = std::max<int64_t>(latest, std::atoll(std::string(alert.substr(at + kField.size(), 20)).c_str()));
  }
  return latest;
}

// The alert's own "detected_at" (vigil's wall clock when it found the match; the last one,
// after the events'), 0 if none.
int64_t DetectedAt(std::string_view alert) {
  static constexpr std::string_view kField = "\"detected_at\":";
  const size_t at = alert.rfind(kField);
  return at == std::string_view::npos ? 0 : std::atoll(std::string(alert.substr(at + kField.size(), 20)).c_str());
}

// The first string field `name` in compact JSON (no escapes in it), empty if none.
std::string_view StringField(std::string_view json, const std::string& name) {
  const std::string opening = "\"" + name + "\":\"";
  const size_t at = json.find(opening);
  if (at == std::string_view::npos) return {};
  const size_t from = at + opening.size();
  return json.substr(from, json.find('"', from) - from);
}

}  // namespace

int main(int argc, char** argv) {
  std::string brokers, topic, alerts_topic, events_path;
  double rate = 0, duration = 60, warmup = 0, settle = 5;
  bool timeline = false;
  std::string key_field;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--brokers") brokers = value;
    else if (flag == "--topic") topic = value;
    else if (flag == "--alerts-topic") alerts_topic = value;
    else if (flag == "--events") events_path = value;
    else if (flag == "--rate") rate = std::stod(value);
    else if (flag == "--duration") duration = std::stod(value);
    else if (flag == "--settle") settle = std::stod(value);
    else if (flag == "--warmup") warmup = std::stod(value);
    else if (flag == "--key-field") key_field = value;
    else if (flag == "--timeline") timeline = value == "1";
    else Die("unknown flag " + flag + " (see the header of load-tests/kafka_load.cc)");
  }
  if (brokers.empty() || topic.empty() || alerts_topic.empty() || events_path.empty()) {
    Die("--brokers, --topic, --alerts-topic and --events are required");
  }
  std::vector<std::string> events;
  {
    std::ifstream in(events_path);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) events.push_back(std::move(line));
    }
  }
  if (events.empty()) Die("no events in " + events_path);

  // Alerts are read from their end as it is now: only this run's count.
  std::atomic<bool> producing{true};
  // Alerts whose events were sent before this wall-clock time belong to the warm-up.
  std::atomic<int64_t> counted_from_ms{INT64_MAX};
  std::vector<int64_t> latencies;
  std::map<std::string, std::vector<int64_t>> by_pattern;
  // Sent to detected (Kafka's input side and matching), of the same alerts as `latencies`.
  std::vector<int64_t> to_detection;
  struct Second {
    size_t alerts = 0;
    int64_t largest = 0;               // latency
    int64_t largest_to_detection = 0;  // of sent to detected
  };
  std::map<int64_t, Second> by_second;  // by the second sent
  std::thread reader([&] {
    rd_kafka_t* rk = Client(RD_KAFKA_CONSUMER, {{"bootstrap.servers", brokers},
                                                {"group.id", "vigil-kafka-load"},
                                                {"isolation.level", "read_committed"},
                                                {"enable.auto.commit", "false"}});
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(16);
    const rd_kafka_metadata_t* metadata = nullptr;
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, alerts_topic.c_str(), nullptr);
    if (rd_kafka_metadata(rk, 0, rkt, &metadata, 10000) || metadata->topic_cnt != 1) Die("no alerts topic");
    for (int p = 0; p < metadata->topics[0].partition_cnt; ++p) {
      rd_kafka_topic_partition_list_add(list, alerts_topic.c_str(), p)->offset = RD_KAFKA_OFFSET_END;
    }
    rd_kafka_metadata_destroy(metadata);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    int64_t stop_at = INT64_MAX;
    while (NowMs() < stop_at) {
      if (!producing && stop_at == INT64_MAX) stop_at = NowMs() + static_cast<int64_t>(settle * 1000);
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
      if (!m) continue;
      if (!m->err) {
        const std::string_view alert(static_cast<const char*>(m->payload), m->len);
        const int64_t sent = LatestSentAt(alert);
        if (sent >= counted_from_ms) {
          const int64_t latency = NowMs() - sent;
          const int64_t detected = DetectedAt(alert);
          const int64_t detection = detected > 0 ? detected - sent : 0;
          latencies.push_back(latency);
          if (detected > 0) to_detection.push_back(detection);
          by_pattern[std::string(StringField(alert, "pattern"))].push_back(latency);
          Second& second = by_second[sent / 1000];
          ++second.alerts;
          second.largest = std::max(second.largest, latency);
          second.largest_to_detection = std::max(second.largest_to_detection, detection);
        }
      }
      rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  });
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the reader is in place

  rd_kafka_t* producer = Client(RD_KAFKA_PRODUCER, {{"bootstrap.servers", brokers}, {"linger.ms", "5"},
                                                    {"queue.buffering.max.messages", "1000000"}});
  const auto start = std::chrono::steady_clock::now();
  counted_from_ms = NowMs() + static_cast<int64_t>(warmup * 1000);
  size_t produced = 0;
  std::string record;
  while (produced < events.size()) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (elapsed >= warmup + duration) break;
    if (rate > 0 && produced >= static_cast<size_t>(elapsed * rate)) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      rd_kafka_poll(producer, 0);
      continue;
    }
    const std::string& event = events[produced];
    record.assign("{\"sent_at\":");
    record += std::to_string(NowMs());
    record += ',';
    record.append(event, 1);
    const std::string_view key = key_field.empty() ? std::string_view() : StringField(event, key_field);
    while (rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_KEY(key.data(), key.size()),
                             RD_KAFKA_V_VALUE(record.data(), record.size()), RD_KAFKA_V_END) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer, 10);
    }
    ++produced;
    if (produced % 1000 == 0) rd_kafka_poll(producer, 0);
  }
  rd_kafka_flush(producer, 60000);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rd_kafka_destroy(producer);
  producing = false;
  reader.join();

  auto at = [](std::vector<int64_t>& sorted, double q) {
    return sorted.empty() ? 0 : sorted[static_cast<size_t>(q * static_cast<double>(sorted.size() - 1))];
  };
  // Per pattern on stderr: a match that waits for later event time (a window, a run that
  // ends with the next event) waits for the stream as well as for vigil.
  for (auto& [pattern, values] : by_pattern) {
    std::sort(values.begin(), values.end());
    std::fprintf(stderr, "  %s: %zu alerts, p50 %lld ms, p99 %lld ms\n", pattern.c_str(), values.size(),
                 static_cast<long long>(at(values, 0.5)), static_cast<long long>(at(values, 0.99)));
  }
  // Where the time goes: up to vigil's detection (the input topic, the consumer, matching),
  // and the rest (the producer, the alerts topic, the commit, the reader).
  if (!to_detection.empty()) {
    std::sort(to_detection.begin(), to_detection.end());
    std::fprintf(stderr, "  sent to detected: p50 %lld ms, p99 %lld ms\n",
                 static_cast<long long>(at(to_detection, 0.5)), static_cast<long long>(at(to_detection, 0.99)));
  }
  if (timeline) {
    for (const auto& [second, entry] : by_second) {
      // The wall-clock time too, to line a spike up with the broker's GC log or vigil's.
      const std::time_t at_time = static_cast<std::time_t>(second);
      char utc[sizeof("00:00:00")];
      std::strftime(utc, sizeof(utc), "%H:%M:%S", std::gmtime(&at_time));
      std::fprintf(stderr, "  second %lld (%s UTC): %zu alerts, largest %lld ms, largest to detection %lld ms\n",
                   static_cast<long long>(second - by_second.begin()->first), utc, entry.alerts,
                   static_cast<long long>(entry.largest), static_cast<long long>(entry.largest_to_detection));
    }
  }
  std::sort(latencies.begin(), latencies.end());
  std::printf("produced %zu events in %.2f s (%.0f events/s); alerts %zu; latency ms p50 %lld p99 %lld max %lld\n",
              produced, seconds, produced / seconds, latencies.size(), static_cast<long long>(at(latencies, 0.5)),
              static_cast<long long>(at(latencies, 0.99)), static_cast<long long>(latencies.empty() ? 0 : latencies.back()));
  return 0;
}
