#include "security/reseal.hpp"

#include "security/crypto.hpp"

#include <asyncmq/error.hpp>

#include <array>
#include <set>

namespace asyncmq::security {
namespace {

// Plain functions, not coroutines: GCC 12 miscompiles braced lists and
// temporaries inside coroutine bodies, so the per-job work lives here.

// The sealed fields of a job row, in SealedRewrite's order. Its log lines
// live apart from the row (JobPage::logs) and are walked beside them.
std::array<std::pair<const std::string*, Field>, 4> sealed_fields(const Job& job) {
  return {{{&job.payload, Field::payload},
           {&job.result, Field::result},
           {&job.error, Field::error},
           {&job.progress, Field::progress}}};
}

const std::vector<LogLine> kNoLines;

// Hands out each job's log lines from a page's JobPage::logs, which is in id
// order like the jobs and has entries only for jobs with lines.
class PageLogs {
 public:
  explicit PageLogs(const JobPage& page) : logs_(page.logs) {}
  // REQUIRES: called for the page's jobs in order.
  const std::vector<LogLine>& of(const JobId& id) {
    while (next_ < logs_.size() && logs_[next_].id < id) ++next_;
    return next_ < logs_.size() && logs_[next_].id == id ? logs_[next_].lines : kNoLines;
  }

 private:
  const std::vector<JobLogLines>& logs_;
  std::size_t next_ = 0;
};

// `stored` sealed again under the primary (or the job's subject key) into
// `out`, or copied if it needs no re-sealing. False if it fails to open.
bool reseal_value(SealingCodec& codec, const CodecContext& ctx, const std::string& stored,
                  std::string& out) {
  if (!codec.needs_reseal(ctx, stored)) {
    out = stored;
    return true;
  }
  try {
    std::string plain = codec.decode(ctx, stored);
    out = codec.encode(ctx, plain);
    secure_wipe(plain);
    return true;
  } catch (const IntegrityError&) {
    return false;
  }
}

// The rewrite that moves `job` and its log lines `lines` (all the scan saw)
// under the primary, or nullopt if it needs none (counted as current) or a
// field or line fails to open (counted unopenable). The lines are sealed
// under the same key choice as the row's fields: the codec context carries
// the job's subject, so a subject's lines go under its data key.
std::optional<SealedRewrite> plan_job(SealingCodec& codec, const Job& job,
                                      const std::vector<LogLine>& lines, ResealProgress& p) {
  auto fields = sealed_fields(job);
  const CodecContext log_ctx = codec_context(job, Field::log);
  bool needed = false;
  for (const auto& [value, field] : fields)
    needed = needed || codec.needs_reseal(codec_context(job, field), *value);
  for (const LogLine& l : lines) needed = needed || codec.needs_reseal(log_ctx, l.text);
  if (!needed) {
    ++p.current;
    return std::nullopt;
  }
  SealedRewrite w;
  w.id = job.id;
  w.expected_payload = job.payload;
  w.expected_result = job.result;
  w.expected_error = job.error;
  w.expected_progress = job.progress;
  std::array<std::string*, 4> out = {&w.payload, &w.result, &w.error, &w.progress};
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (!reseal_value(codec, codec_context(job, fields[i].second), *fields[i].first, *out[i])) {
      ++p.unopenable;  // left as it is; `keys list` and retire still count it
      return std::nullopt;
    }
  }
  w.expected_logs.reserve(lines.size());
  w.logs.resize(lines.size());
  for (std::size_t k = 0; k < lines.size(); ++k) {
    w.expected_logs.push_back(lines[k].text);
    if (!reseal_value(codec, log_ctx, lines[k].text, w.logs[k])) {
      ++p.unopenable;
      return std::nullopt;
    }
  }
  return w;
}

std::vector<SealedRewrite> plan_page(SealingCodec& codec, const JobPage& page, ResealProgress& p) {
  std::vector<SealedRewrite> rewrites;
  PageLogs logs(page);
  for (const Job& job : page.jobs) {
    ++p.scanned;
    const std::vector<LogLine>& lines = logs.of(job.id);
    p.log_lines_scanned += lines.size();
    if (auto w = plan_job(codec, job, lines, p)) rewrites.push_back(std::move(*w));
  }
  return rewrites;
}

// What one stored value depends on, added to a job's tally.
struct JobKeys {
  std::set<std::string> keys;
  bool subject = false, unsealed = false;
  void add(const std::string& f) {
    if (f.empty()) return;
    std::string id = sealed_key_id(f);
    if (!id.empty()) {
      keys.insert(std::move(id));
    } else if (static_cast<std::uint8_t>(f[0]) == kSubjectEnvelopeVersion) {
      subject = true;
    } else {
      unsealed = true;
    }
  }
};

void count_page(const JobPage& page, KeyUsage& u) {
  PageLogs logs(page);
  for (const Job& job : page.jobs) {
    ++u.jobs;
    JobKeys row, lines;
    for (const auto& [value, field] : sealed_fields(job)) row.add(*value);
    const std::vector<LogLine>& log = logs.of(job.id);
    for (const LogLine& l : log) lines.add(l.text);
    u.log_lines += log.size();
    std::set<std::string> all = row.keys;
    all.insert(lines.keys.begin(), lines.keys.end());
    for (const auto& k : all) ++u.jobs_by_key[k];
    for (const auto& k : lines.keys) ++u.log_jobs_by_key[k];
    if (row.subject || lines.subject) ++u.subject_jobs;
    if (row.unsealed || lines.unsealed) ++u.unsealed_jobs;
  }
}

}  // namespace

boost::asio::awaitable<ResealReport> reseal_all(Backend& backend, SealingCodec& codec,
                                                ResealOptions options) {
  if (options.batch < 1 || options.batch > 1000)
    throw InvalidArgument("reseal batch must be in [1, 1000]");
  if (codec.keyring().primary_id().empty())
    throw InvalidArgument("the keyring has no primary key to re-seal under");
  ResealReport report;
  const int max_passes = std::max(1, options.max_passes);
  for (int pass = 1; pass <= max_passes; ++pass) {
    ResealProgress p;
    p.pass = pass;
    p.resealed = report.resealed;
    std::optional<JobId> after;
    std::uint64_t rewritten_this_pass = 0;
    for (;;) {
      JobPage page = co_await backend.scan(after, options.batch);
      std::vector<SealedRewrite> rewrites = plan_page(codec, page, p);
      if (!rewrites.empty()) {
        std::vector<bool> applied = co_await backend.rewrite_sealed(std::move(rewrites));
        for (bool a : applied) {
          if (a) {
            ++rewritten_this_pass;
            ++report.resealed;
          } else {
            ++p.conflicts;
          }
        }
      }
      p.resealed = report.resealed;
      if (options.progress) options.progress(p);
      if (!page.next) break;
      after = page.next;
    }
    report.passes = pass;
    report.last = p;
    if (rewritten_this_pass == 0 && p.conflicts == 0) {
      report.complete = true;
      break;
    }
  }
  report.subject_keys = codec.rewrap_subject_keys();
  co_return report;
}

boost::asio::awaitable<KeyUsage> key_usage(Backend& backend, SealingCodec& codec) {
  KeyUsage u;
  std::optional<JobId> after;
  for (;;) {
    JobPage page = co_await backend.scan(after, 1000);
    count_page(page, u);
    if (!page.next) break;
    after = page.next;
  }
  for (const auto& [index, key_id] : codec.subject_key_wrappers()) ++u.subject_keys_by_key[key_id];
  co_return u;
}

namespace {

// Not a coroutine (see above); returns the blind index.
std::string index_and_destroy(Codec& codec, std::string& subject, bool& destroyed) {
  if (subject.empty()) throw InvalidArgument("the subject to erase is empty");
  std::string index = codec.encode_subject(subject);
  secure_wipe(subject);
  if (auto* sealing = dynamic_cast<SealingCodec*>(&codec))
    destroyed = sealing->destroy_subject_key(index);
  return index;
}

}  // namespace

boost::asio::awaitable<ErasureReport> erase_subject(Backend& backend, Codec& codec,
                                                    std::string subject) {
  ErasureReport r;
  std::string index = index_and_destroy(codec, subject, r.key_destroyed);
  PurgeResult p = co_await backend.purge_subject(std::move(index));
  r.jobs = p.jobs;
  r.scrubbed = p.scrubbed;
  co_return r;
}

}  // namespace asyncmq::security
