package vigil.peers;

/**
 * One generated event, reduced to the fields the compared rules read. `seq` is the event's
 * line number in the input file (from 1): matches carry it, and {@link MatchWriter} swaps it
 * for the original line once timing is over, so the in-memory stream stays small.
 *
 * <p>Public fields and a no-argument constructor make it a Flink POJO and an Esper bean.
 */
public final class Event {
  public long seq;
  public long ts;
  public double amount;
  public String cardId;
  public String type;
  public String country;
  public boolean cardPresent;

  public Event() {}

  public long getSeq() { return seq; }
  public long getTs() { return ts; }
  public double getAmount() { return amount; }
  public String getCardId() { return cardId; }
  public String getType() { return type; }
  public String getCountry() { return country; }
  public boolean isCardPresent() { return cardPresent; }
}
