// The codec seam: the one place where a job's data changes form between the
// Queue (JSON) and the Backend (opaque bytes).
//
//   Queue::add ─► validate (JSON, size) ─► Codec::encode ─► Backend::enqueue
//   Backend::claim ─► Codec::decode ─► handler(TaskContext&)
//   handler result/error ─► Codec::encode ─► Backend::finish
//
// The default codec passes bytes through. The security layer supplies one
// that seals with AES-256-GCM; guards and auditing wrap it. Backends never
// change when a codec does.
//
// Thread safety: a Codec is called concurrently from any thread; an
// implementation must be safe for that.
#pragma once

#include <asyncmq/job.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace asyncmq {

// Which field of a job a value belongs to. Bound into sealed data so that a
// value copied into another job or field fails to open. `progress` is the
// handler's progress value (Job::progress), sealed by the worker before
// Backend::set_progress like a log line.
enum class Field : std::uint8_t { payload = 1, result = 2, error = 3, log = 4, progress = 5 };

struct CodecContext {
  std::string_view queue;
  const JobId& job;
  Field field;
  // The job's stored data subject (Codec::encode_subject's output, the blind
  // index), empty if none. The sealing codec seals a subject's fields under
  // that subject's own data key (crypto-shredding, issue 5).
  std::string_view subject = {};
};

// The context of one field of a stored job. `job` must outlive the result.
inline CodecContext codec_context(const Job& job, Field field) {
  return CodecContext{job.queue, job.id, field, job.options.subject};
}

class Codec {
 public:
  virtual ~Codec() = default;
  // Plain bytes (JSON text, or an error message) to stored bytes.
  virtual std::string encode(const CodecContext& ctx, std::string_view plain) = 0;
  // Stored bytes back to plain bytes. Throws IntegrityError if they fail a
  // check; the message names the job and field, never the content.
  virtual std::string decode(const CodecContext& ctx, std::string_view stored) = 0;
  // The form in which a data subject id is stored (a blind index, once the
  // security layer is configured).
  virtual std::string encode_subject(std::string_view subject) { return std::string(subject); }
};

// Stores bytes as given.
std::shared_ptr<Codec> make_plain_codec();

}  // namespace asyncmq
