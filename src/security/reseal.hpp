// Key rotation and erasure over a Backend: the algorithms behind
// `asyncmq keys reseal|retire|list` and `asyncmq purge --subject`.
//
// Re-sealing while workers run. The walk reads jobs a page at a time in id
// order (Backend::scan, which brings each job's log lines along), opens each
// field of the job row (payload, result, error, progress) and each log line
// that is sealed under a key other than the primary, seals it again under
// the primary (a job with a subject: under the subject's key, for its lines
// as for its payload), and writes the page back with
// Backend::rewrite_sealed: a compare-and-set on the exact bytes it read,
// the row's fields and the log lines it saw. A job that a worker finished
// (or failed, or reported progress for) meanwhile has different bytes, so
// its write is refused and the job is read again in the next pass; nothing
// a worker wrote is ever overwritten, no job changes state, and none is
// lost or run twice. Log lines a worker appended after the scan are not
// compared (the job is still re-sealed) and are left for the next pass,
// which a rewrite in this one always causes. Passes repeat until one finds
// nothing left to do (or max_passes): results and lines sealed by a worker
// that still held the old keys are caught by the next pass. (A handler that
// reports progress faster than a pass takes can keep its job refused until
// max_passes; the report then says incomplete and a later run finishes.)
// Resumable: a crash loses nothing; running it again skips every job that
// is already under the primary, so it simply resumes.
//
// Thread safety: a plain function of its arguments; the Backend and codec
// are safe for concurrent use.
#pragma once

#include <asyncmq/backend.hpp>

#include "security/sealing_codec.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace asyncmq::security {

struct ResealProgress {
  int pass = 0;
  std::uint64_t scanned = 0;     // jobs read in this pass
  std::uint64_t log_lines_scanned = 0;  // their log lines, this pass
  std::uint64_t resealed = 0;    // jobs rewritten, all passes
  std::uint64_t current = 0;     // jobs already under the primary, this pass
  std::uint64_t conflicts = 0;   // compare-and-set refused (changed meanwhile), this pass
  std::uint64_t unopenable = 0;  // jobs with a field or log line that failed to open
                                 // (left as they are), this pass
};

struct ResealOptions {
  std::size_t batch = 500;  // jobs per scan page and per compare-and-set
  int max_passes = 10;
  // Called after every batch (on the awaiting coroutine's thread).
  std::function<void(const ResealProgress&)> progress;
};

struct ResealReport {
  ResealProgress last;  // the final pass
  int passes = 0;
  std::uint64_t resealed = 0;
  bool complete = false;  // the final pass found nothing to reseal and no conflict
  SealingCodec::RewrapStats subject_keys;
};

boost::asio::awaitable<ResealReport> reseal_all(Backend& backend, SealingCodec& codec,
                                                ResealOptions options);

// Which keyring keys stored data depends on.
struct KeyUsage {
  std::uint64_t jobs = 0;                              // jobs scanned
  std::uint64_t log_lines = 0;                         // their log lines
  // Jobs with a field or a log line under the key.
  std::map<std::string, std::uint64_t> jobs_by_key;
  // Of those, the jobs with a log line under the key.
  std::map<std::string, std::uint64_t> log_jobs_by_key;
  std::uint64_t subject_jobs = 0;   // jobs with a field or line under a subject's key
  std::uint64_t unsealed_jobs = 0;  // jobs with a field or line that is no envelope
  std::map<std::string, std::uint64_t> subject_keys_by_key;  // subject keys wrapped under it
};

boost::asio::awaitable<KeyUsage> key_usage(Backend& backend, SealingCodec& codec);

// Erasure of a data subject (`asyncmq purge --subject`): computes the blind
// index with `codec` (the subject itself is wiped from memory and never
// stored), destroys the subject's data key if `codec` is a sealing codec
// with a subject key store (first: from then on every copy of the
// subject's jobs is unreadable, even if the deletion fails and has to be
// repeated), then deletes the subject's jobs in one transaction.
struct ErasureReport {
  std::uint64_t jobs = 0;
  bool key_destroyed = false;
  bool scrubbed = true;  // see PurgeResult
};
boost::asio::awaitable<ErasureReport> erase_subject(Backend& backend, Codec& codec,
                                                    std::string subject);

}  // namespace asyncmq::security
