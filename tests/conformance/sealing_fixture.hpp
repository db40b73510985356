// The fixture of the sealed-field conformance tests
// (sealed_progress_conformance_test.cpp, sealed_logs_conformance_test.cpp):
// a WorkerConformance whose client seals with a keyring of known keys (k1
// primary at first), an index key and an in-memory subject key store, with
// helpers to rotate, to build a keyring of one key alone (the others
// removed), and to move a job's row under the primary by hand.
#pragma once

#include "conformance/worker_fixture.hpp"

#include "security/crypto.hpp"
#include "security/sealing_codec.hpp"

#include <asyncmq/security.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace asyncmq::testing {

class SealingConformance : public WorkerConformance {
 protected:
  void SetUp() override {
    ring_ = std::make_shared<Keyring>();
    add_key("k1");
    ring_->set_index_key("ix", Secret(security::random_bytes(32)));
    subjects_ = make_memory_subject_key_store();
    codec_ = std::make_shared<security::SealingCodec>(ring_, subjects_);
    ClientOptions o;
    o.codec = codec_;
    client_ = Client::open(GetParam().uri(dir_.path()), env_, o);
    follow_all_events();
  }

  Job stored(const JobId& id) { return *sync_wait(backend().get(id)); }

  // Adds key `id` as the primary (the previous one becomes decrypt-only).
  void add_key(const std::string& id) {
    keys_[id] = security::random_bytes(32);
    ring_->add(id, KeyState::primary, Secret(keys_[id]));
  }

  // A codec whose keyring holds only `key_id` (and the same subject keys).
  std::shared_ptr<security::SealingCodec> codec_with_only(const std::string& key_id) {
    auto only = std::make_shared<Keyring>();
    only->add(key_id, KeyState::primary, Secret(keys_.at(key_id)));
    return std::make_shared<security::SealingCodec>(only, subjects_);
  }

  // Re-seals the payload and result of `id` under the primary by hand and
  // leaves everything else (error, progress, log lines) as it is: a store
  // in which only those still need the old key.
  void move_payload_and_result(const JobId& id) {
    Job j = stored(id);
    SealedRewrite w;
    w.id = id;
    w.expected_payload = j.payload;
    w.expected_result = j.result;
    w.expected_error = w.error = j.error;
    w.expected_progress = w.progress = j.progress;
    w.payload = codec_->encode(codec_context(j, Field::payload),
                               codec_->decode(codec_context(j, Field::payload), j.payload));
    w.result = codec_->encode(codec_context(j, Field::result),
                              codec_->decode(codec_context(j, Field::result), j.result));
    std::vector<SealedRewrite> batch;
    batch.push_back(std::move(w));
    ASSERT_EQ(sync_wait(backend().rewrite_sealed(batch)), std::vector<bool>{true});
  }

  std::shared_ptr<Keyring> ring_;
  std::shared_ptr<SubjectKeyStore> subjects_;
  std::shared_ptr<security::SealingCodec> codec_;
  std::map<std::string, std::string> keys_;
};

}  // namespace asyncmq::testing
