// The audit verifier: walks the log with the verification key (the seed) and
// the checkpoint public key, and names the first record that is wrong.
//
// Per line, in file order, with `expected` the next sequence number:
//   - not a record, or not exactly the line the writer renders for its
//     fields                                  -> changed (at `expected`)
//   - its MAC does not verify under k_epoch   -> changed, or inserted if its
//                                                sequence number is another
//                                                line's
//   - genuine, but seq > expected             -> reordered if `expected`
//                                                comes later, else removed
//   - genuine, but seq < expected             -> inserted (a replayed copy)
//                                                or reordered
//   - genuine, seq == expected, prev != MAC of the record before -> changed
// The walk stops at the first problem: after a break, everything later is
// out of step and would only repeat it. Then every checkpoint is checked
// against the records it names: a checkpoint beyond the last good record
// means the tail was cut (truncated); records after the last checkpoint are
// unanchored (a cut there would go unseen).
//
// Where the lines come from: the log file, or a backend's audit table (an
// AuditLineReader, paged by seq). The walk is the same; a line source only
// says how it names a line in messages ("line 7" of the file, "row 7" of
// the table) and, for the table, the seq a line is stored under, which must
// be its record's own (else it counts as changed: a row renumbered so that
// a re-sent line would be stored twice). The walk reads its source twice
// (the first pass notes where each seq appears) instead of holding it all.
#include <asyncmq/audit.hpp>

#include "security/audit_crypto.hpp"
#include "security/crypto.hpp"

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <tuple>

namespace asyncmq {
namespace {

using Kind = AuditProblem::Kind;

// Deriving keys for absurd epochs would never end: no chain evolves this
// often (about 3 hours of HMACs at worst on one core... far less in
// practice: ten million take a few seconds).
constexpr std::uint64_t kMaxDerivations = 10'000'000;

struct Checkpoint {
  security::AuditCheckpoint c;
  std::size_t number = 0;  // 1-based line in the checkpoint file
};

class KeyCursor {
 public:
  explicit KeyCursor(const Secret& seed) : seed_(seed) { key_ = security::audit_epoch0_key(seed.reveal()); }
  // k_epoch, or nullopt if deriving it would take unreasonably long.
  const Secret* get(std::uint64_t epoch) {
    if (epoch < epoch_) {
      // Only an out-of-order record asks for an earlier epoch: start over.
      key_ = security::audit_epoch0_key(seed_.reveal());
      epoch_ = 0;
    }
    if (epoch - epoch_ > kMaxDerivations - std::min(derived_, kMaxDerivations)) return nullptr;
    while (epoch_ < epoch) {
      key_ = security::audit_evolve_key(key_.reveal(), epoch_);
      ++epoch_;
      ++derived_;
    }
    return &key_;
  }

 private:
  const Secret& seed_;
  Secret key_;
  std::uint64_t epoch_ = 0;
  std::uint64_t derived_ = 0;
};

// The chain's lines in stored order, readable twice.
class LineSource {
 public:
  virtual ~LineSource() = default;
  // Back to the first line.
  virtual void rewind() = 0;
  // The next line; false at the end.
  virtual bool next(std::string& text) = 0;
  // How messages name the line next() gave last, e.g. "line 7".
  virtual std::string where() const = 0;
  // The seq that line is stored under, if the store keys lines by seq.
  virtual std::optional<std::uint64_t> stored_seq() const = 0;
};

class FileLines final : public LineSource {
 public:
  explicit FileLines(const std::filesystem::path& path) : path_(path) { rewind(); }
  void rewind() override {
    in_ = std::ifstream(path_, std::ios::binary);
    n_ = 0;
  }
  bool next(std::string& text) override {
    if (!std::getline(in_, text)) return false;
    ++n_;
    return true;
  }
  std::string where() const override { return "line " + std::to_string(n_); }
  std::optional<std::uint64_t> stored_seq() const override { return std::nullopt; }

 private:
  std::filesystem::path path_;
  std::ifstream in_;
  std::size_t n_ = 0;
};

class ReaderLines final : public LineSource {
 public:
  explicit ReaderLines(const AuditLineReader& read) : read_(read) { rewind(); }
  void rewind() override {
    page_.clear();
    at_ = 0;
    after_ = std::numeric_limits<std::int64_t>::min();
  }
  bool next(std::string& text) override {
    if (at_ == page_.size()) {
      page_ = read_(after_, kPage);
      at_ = 0;
      if (page_.empty()) return false;
      after_ = page_.back().seq;
    }
    current_ = page_[at_].seq;
    text = std::move(page_[at_++].text);
    return true;
  }
  std::string where() const override { return "row " + std::to_string(current_); }
  std::optional<std::uint64_t> stored_seq() const override {
    return static_cast<std::uint64_t>(current_);
  }

 private:
  static constexpr std::size_t kPage = 1000;
  const AuditLineReader& read_;
  std::vector<AuditChainLine> page_;
  std::size_t at_ = 0;
  std::int64_t after_ = 0;
  std::int64_t current_ = 0;
};

std::string range(std::uint64_t a, std::uint64_t b) {
  return a == b ? "record " + std::to_string(a)
                : "records " + std::to_string(a) + ".." + std::to_string(b);
}

AuditVerifyReport verify_lines(const AuditVerifyOptions& options, LineSource& source) {
  AuditVerifyReport rep;
  std::string vtext = security::read_private_file(options.verify_key_path, "audit verify key");
  security::AuditVerifyKey vk;
  try {
    vk = security::parse_verify_key(vtext, options.verify_key_path);
  } catch (...) {
    security::secure_wipe(vtext);
    throw;
  }
  security::secure_wipe(vtext);
  const std::string key_id = security::audit_key_id(vk.public_key);

  auto fail = [&](Kind kind, std::uint64_t seq, std::string message) {
    if (!rep.problem) {
      rep.problem = AuditProblem{kind, seq, std::move(message)};
    } else {
      rep.notes.push_back(std::move(message));
    }
  };

  // ---- checkpoints ----
  std::vector<Checkpoint> cps;
  // Reported after the records: a changed record is the finding that matters most.
  std::vector<std::tuple<Kind, std::uint64_t, std::string>> cp_problems;
  {
    std::ifstream in(options.checkpoint_path, std::ios::binary);
    std::string line;
    std::size_t n = 0;
    std::uint64_t last = 0;
    while (in && std::getline(in, line)) {
      ++n;
      auto c = security::parse_audit_checkpoint_line(line);
      std::string where = "checkpoint #" + std::to_string(n);
      if (!c) {
        cp_problems.emplace_back(Kind::bad_checkpoint, 0, where + " is not a well-formed checkpoint line");
        continue;
      }
      if (c->key_id != key_id ||
          !security::ed25519_verify(vk.public_key, security::audit_checkpoint_message(*c), c->sig)) {
        cp_problems.emplace_back(Kind::bad_checkpoint, c->seq,
             where + " (seq " + std::to_string(c->seq) + ") has no valid signature of key " + key_id);
        continue;
      }
      if (c->seq < last) {
        cp_problems.emplace_back(Kind::bad_checkpoint, c->seq,
             where + " (seq " + std::to_string(c->seq) + ") comes after one at seq " +
                 std::to_string(last) + " (checkpoints out of order)");
        continue;
      }
      last = c->seq;
      cps.push_back({*c, n});
    }
  }
  if (options.from_checkpoint) {
    auto it = std::find_if(cps.begin(), cps.end(),
                           [&](const Checkpoint& c) { return c.number == *options.from_checkpoint; });
    if (it == cps.end())
      throw InvalidArgument("--from " + std::to_string(*options.from_checkpoint) +
                            ": no valid checkpoint with that number");
  }
  std::map<std::uint64_t, std::string> cp_mac;  // seq -> mac every checkpoint there agrees on
  for (const auto& c : cps) {
    auto [it, inserted] = cp_mac.emplace(c.c.seq, c.c.mac);
    if (!inserted && !security::constant_time_equal(it->second, c.c.mac))
      cp_problems.emplace_back(Kind::bad_checkpoint, c.c.seq,
           "checkpoint #" + std::to_string(c.number) + " disagrees with an earlier one about seq " +
               std::to_string(c.c.seq));
  }

  // ---- first pass: where each sequence number appears ----
  std::vector<std::pair<std::uint64_t, std::size_t>> positions;  // (seq, line), sorted
  {
    source.rewind();
    std::string line;
    std::size_t n = 0;
    while (source.next(line)) {
      ++n;
      if (auto r = audit_from_json_line(line)) positions.emplace_back(r->seq, n);
    }
    std::sort(positions.begin(), positions.end());
  }
  auto appears_after = [&](std::uint64_t seq, std::size_t line) {
    auto it = std::lower_bound(positions.begin(), positions.end(), std::make_pair(seq, line + 1));
    return it != positions.end() && it->first == seq;
  };
  auto appears_elsewhere = [&](std::uint64_t seq, std::size_t line) {
    auto it = std::lower_bound(positions.begin(), positions.end(), std::make_pair(seq, std::size_t{0}));
    for (; it != positions.end() && it->first == seq; ++it)
      if (it->second != line) return true;
    return false;
  };

  // Epoch bounds: records up to a checkpoint's seq carry at most its epoch
  // (the writer checkpoints before every evolution, so a record of a
  // finished epoch cannot be relabelled with a later key).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> bounds;  // (seq, epoch), by seq
  for (const auto& c : cps) bounds.emplace_back(c.c.seq, c.c.epoch);
  auto epoch_bound = [&](std::uint64_t seq) -> std::optional<std::pair<std::uint64_t, std::uint64_t>> {
    auto it = std::lower_bound(bounds.begin(), bounds.end(), std::make_pair(seq, std::uint64_t{0}));
    if (it == bounds.end()) return std::nullopt;
    return *it;
  };

  // ---- the walk ----
  std::uint64_t expected = 1;
  std::uint64_t prev_epoch = 0;
  std::string prev;  // MAC of the record before `expected`
  std::uint64_t skip_through = 0;
  if (options.from_checkpoint) {
    const auto& c = *std::find_if(cps.begin(), cps.end(), [&](const Checkpoint& x) {
      return x.number == *options.from_checkpoint;
    });
    skip_through = c.c.seq;
    expected = c.c.seq + 1;
    prev = c.c.mac;
    rep.notes.push_back("started at checkpoint #" + std::to_string(c.number) + " (seq " +
                        std::to_string(c.c.seq) + "); earlier records not checked");
  }
  KeyCursor keys(vk.seed);
  std::map<std::uint64_t, std::string> seen_mac;  // only seqs a checkpoint names
  std::uint64_t last_good = expected - 1;
  {
    source.rewind();
    std::string line;
    std::size_t n = 0;
    while (source.next(line)) {
      ++n;
      std::string at = " (" + source.where() + ")";
      auto r = audit_from_json_line(line);
      if (r && r->seq <= skip_through) {
        if (r->seq == skip_through && !security::constant_time_equal(r->mac, prev))
          fail(Kind::changed, r->seq,
               "record " + std::to_string(r->seq) + at + " does not match the starting checkpoint");
        if (rep.problem) break;
        continue;
      }
      if (!r) {
        fail(Kind::changed, expected,
             "record " + std::to_string(expected) + at +
                 " was changed: the line is not a well-formed record");
        break;
      }
      if (audit_to_json_line(*r) != line) {
        fail(Kind::changed, expected,
             "record " + std::to_string(expected) + at +
                 " was changed: the line is not in the writer's exact form");
        break;
      }
      const Secret* k = keys.get(r->epoch);
      bool mac_ok = k && security::constant_time_equal(
                             security::hmac_sha256(k->reveal(), audit_canonical(*r)), r->mac);
      if (!mac_ok) {
        if (r->seq != expected && appears_elsewhere(r->seq, n)) {
          fail(Kind::inserted, expected,
               "a record that does not belong to the chain was inserted where record " +
                   std::to_string(expected) + " should be" + at + " (it claims seq " +
                   std::to_string(r->seq) + " and its MAC does not verify)");
        } else {
          fail(Kind::changed, expected,
               "record " + std::to_string(expected) + at +
                   " was changed: its MAC does not verify" +
                   (r->seq != expected ? " (it claims seq " + std::to_string(r->seq) + ")" : ""));
        }
        break;
      }
      if (r->seq > expected) {
        if (appears_after(expected, n)) {
          fail(Kind::reordered, expected,
               "record " + std::to_string(expected) + " is out of order: record " +
                   std::to_string(r->seq) + at + " comes before it");
        } else {
          fail(Kind::removed, expected,
               range(expected, r->seq - 1) + " " + (r->seq - 1 == expected ? "was" : "were") +
                   " removed: record " + std::to_string(r->seq) + at + " follows record " +
                   std::to_string(expected - 1));
        }
        break;
      }
      if (r->seq < expected) {
        bool copy = seen_mac.count(r->seq) ||
                    std::any_of(positions.begin(), positions.end(), [&](const auto& p) {
                      return p.first == r->seq && p.second < n;
                    });
        fail(copy ? Kind::inserted : Kind::reordered, expected,
             copy ? "a copy of record " + std::to_string(r->seq) + " was inserted" + at +
                        " where record " + std::to_string(expected) + " should be"
                  : "record " + std::to_string(r->seq) + at + " is out of order: expected " +
                        std::to_string(expected));
        break;
      }
      if (r->epoch < prev_epoch) {
        fail(Kind::changed, expected,
             "record " + std::to_string(expected) + at + " was changed: its epoch " +
                 std::to_string(r->epoch) + " is earlier than the record before it (" +
                 std::to_string(prev_epoch) + ")");
        break;
      }
      if (auto b = epoch_bound(r->seq); b && r->epoch > b->second) {
        fail(Kind::changed, expected,
             "record " + std::to_string(expected) + at + " was changed: its epoch " +
                 std::to_string(r->epoch) + " is later than the checkpoint at seq " +
                 std::to_string(b->first) + " allows (" + std::to_string(b->second) +
                 "): re-MACed with a newer key");
        break;
      }
      if (!security::constant_time_equal(r->prev_mac, prev)) {
        fail(Kind::changed, expected,
             "record " + std::to_string(expected) + at +
                 " does not link to record " + std::to_string(expected - 1) +
                 " (its prev MAC differs): the chain was changed before it");
        break;
      }
      if (auto key = source.stored_seq(); key && *key != r->seq) {
        fail(Kind::changed, expected,
             "record " + std::to_string(expected) + at + " is stored under seq " +
                 std::to_string(*key) + ", not its own: the table was changed");
        break;
      }
      if (cp_mac.count(r->seq)) seen_mac[r->seq] = r->mac;
      prev = r->mac;
      prev_epoch = r->epoch;
      last_good = r->seq;
      ++expected;
      ++rep.records;
    }
  }
  rep.last_seq = last_good;

  // ---- checkpoints against the log ----
  for (const auto& c : cps) {
    std::string where = "checkpoint #" + std::to_string(c.number) + " (seq " +
                        std::to_string(c.c.seq) + ")";
    if (c.c.seq <= skip_through && options.from_checkpoint) {
      if (c.c.seq == skip_through) rep.anchored_seq = std::max(rep.anchored_seq, c.c.seq);
      ++rep.checkpoints;
      continue;
    }
    if (c.c.seq > last_good) {
      if (rep.problem) {
        rep.notes.push_back(where + " lies beyond the last good record " +
                            std::to_string(last_good));
      } else {
        fail(Kind::truncated, last_good + 1,
             range(last_good + 1, c.c.seq) + " " + (c.c.seq == last_good + 1 ? "is" : "are") +
                 " missing: the log ends at seq " + std::to_string(last_good) + " but " + where +
                 " covers them (the tail was cut off)");
      }
      continue;
    }
    auto it = seen_mac.find(c.c.seq);
    if (it == seen_mac.end() || !security::constant_time_equal(it->second, c.c.mac)) {
      fail(Kind::changed, c.c.seq,
           "record " + std::to_string(c.c.seq) + " does not match " + where +
               " (the chain was rebuilt)");
      continue;
    }
    ++rep.checkpoints;
    rep.anchored_seq = std::max(rep.anchored_seq, c.c.seq);
  }
  for (auto& [kind, seq, msg] : cp_problems) fail(kind, seq, std::move(msg));
  if (!rep.problem && last_good > rep.anchored_seq) {
    std::string msg = range(rep.anchored_seq + 1, last_good) +
                      " after the last checkpoint " + (last_good == rep.anchored_seq + 1 ? "is" : "are") +
                      " unanchored: a cut there would not be seen";
    if (options.allow_unanchored) {
      rep.notes.push_back(msg);
    } else {
      fail(Kind::unanchored, rep.anchored_seq + 1, msg);
    }
  }
  rep.intact = !rep.problem;
  return rep;
}

}  // namespace

AuditVerifyReport verify_audit(const AuditVerifyOptions& options) {
  if (!std::filesystem::exists(options.log_path))
    throw NotFound("audit log " + options.log_path.string() + " does not exist");
  FileLines lines(options.log_path);
  return verify_lines(options, lines);
}

AuditVerifyReport verify_audit(const AuditVerifyOptions& options, const AuditLineReader& read) {
  if (!read) throw InvalidArgument("audit verify: no line reader given");
  ReaderLines lines(read);
  return verify_lines(options, lines);
}

}  // namespace asyncmq
