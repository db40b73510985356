// Erasure by data subject: the subject key store, sealing under a
// per-subject data key (version-2 envelopes), and purge with
// crypto-shredding on SQLite: a copy of the database taken before the purge
// cannot open the subject's jobs afterwards, and no byte of the purged data
// stays in the database file or its WAL.
#include "security/crypto.hpp"
#include "security/reseal.hpp"
#include "security/sealing_codec.hpp"

#include <asyncmq/client.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/sync.hpp>

#include "support/fake_env.hpp"
#include "support/temp_dir.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace asyncmq::testing {
namespace {

namespace fs = std::filesystem;
using boost::json::object;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Files of `dir` (not recursing) in which some `min_len`-byte window of
// `needle` occurs.
std::vector<std::string> found_in(const std::string& dir, const std::string& needle,
                                  std::size_t min_len) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string bytes = slurp(e.path());
    for (std::size_t i = 0; i + min_len <= needle.size(); i += 1) {
      if (bytes.find(needle.substr(i, min_len)) != std::string::npos) {
        out.push_back(e.path().filename().string());
        break;
      }
    }
  }
  return out;
}

const std::string kIndexA(64, 'a');
const std::string kIndexB(64, 'b');

TEST(SubjectKeyStore, DirectoryStoreSemantics) {
  TempDir dir;
  auto store = open_subject_key_dir(dir.file("sk"));
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("sk").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  EXPECT_FALSE(store->get(kIndexA));
  EXPECT_EQ(store->put_if_absent(kIndexA, "first"), "first");
  EXPECT_EQ(store->put_if_absent(kIndexA, "second"), "first");  // the first writer wins
  EXPECT_FALSE(store->replace(kIndexA, "second", "third"));     // compare fails
  EXPECT_TRUE(store->replace(kIndexA, "first", "third"));
  EXPECT_EQ(*store->get(kIndexA), "third");
  ASSERT_EQ(::stat(dir.file("sk/" + kIndexA).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  store->put_if_absent(kIndexB, "b");
  EXPECT_EQ(store->list(), (std::vector<std::string>{kIndexA, kIndexB}));
  EXPECT_TRUE(store->destroy(kIndexA));
  EXPECT_FALSE(store->destroy(kIndexA));
  EXPECT_FALSE(store->get(kIndexA));
  EXPECT_EQ(store->list(), std::vector<std::string>{kIndexB});
  // A stored subject never names a path outside the directory.
  EXPECT_THROW(store->get("../../etc/passwd"), InvalidArgument);
  EXPECT_THROW(store->put_if_absent(std::string(64, 'A'), "x"), InvalidArgument);
  // A second store on the same directory sees the same keys.
  EXPECT_EQ(*open_subject_key_dir(dir.file("sk"))->get(kIndexB), "b");

  ASSERT_EQ(::chmod(dir.file("sk").c_str(), 0750), 0);
  EXPECT_THROW(open_subject_key_dir(dir.file("sk")), KeyFileError);
}

struct Sealed {
  std::shared_ptr<Keyring> ring = std::make_shared<Keyring>();
  std::shared_ptr<SubjectKeyStore> subjects;
  std::shared_ptr<security::SealingCodec> codec;
  explicit Sealed(std::shared_ptr<SubjectKeyStore> s) : subjects(std::move(s)) {
    ring->add("k1", KeyState::primary, Secret(std::string(32, 'k')));
    ring->set_index_key("ix", Secret(std::string(32, 'i')));
    codec = std::make_shared<security::SealingCodec>(ring, subjects);
  }
  ClientOptions options() const {
    ClientOptions o;
    o.codec = codec;
    return o;
  }
};

TEST(SubjectSealing, SubjectJobsAreSealedUnderTheirOwnKey) {
  FakeEnv env;
  Sealed s(make_memory_subject_key_store());
  auto client = Client::open("memory://", env, s.options());
  Queue q(client, "q");
  JobOptions a, b;
  a.subject = "alice";
  b.subject = "bob";
  JobId ja = sync_wait(q.add("t", object{{"who", "alice"}}, a));
  JobId jb = sync_wait(q.add("t", object{{"who", "bob"}}, b));
  JobId jn = sync_wait(q.add("t", object{{"who", "nobody"}}));

  Job sa = *sync_wait(client->backend().get(ja));
  EXPECT_EQ(static_cast<std::uint8_t>(sa.payload[0]), security::kSubjectEnvelopeVersion);
  EXPECT_EQ(sa.options.subject, s.codec->encode_subject("alice"));
  EXPECT_EQ(security::sealed_key_id(sync_wait(client->backend().get(jn))->payload), "k1");
  EXPECT_EQ(s.subjects->list().size(), 2u);
  EXPECT_EQ(sync_wait(client->get(ja))->payload, R"({"who":"alice"})");

  // Alice's sealed payload under Bob's subject (a moved payload) fails.
  Job sb = *sync_wait(client->backend().get(jb));
  EXPECT_THROW(s.codec->decode(codec_context(sb, Field::payload), sa.payload), IntegrityError);
  // Blanking the subject does not help either.
  Job blank = sa;
  blank.options.subject.clear();
  EXPECT_THROW(s.codec->decode(codec_context(blank, Field::payload), sa.payload), IntegrityError);

  // Destroying Alice's key shreds her job; Bob's and the plain one still open.
  auto report = sync_wait(security::erase_subject(client->backend(), *s.codec, "alice"));
  EXPECT_EQ(report.jobs, 1u);
  EXPECT_TRUE(report.key_destroyed);
  try {
    s.codec->decode(codec_context(sa, Field::payload), sa.payload);
    ADD_FAILURE() << "a purged subject's payload opened";
  } catch (const IntegrityError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(ja.str()), std::string::npos) << what;
    EXPECT_NE(what.find("purged"), std::string::npos) << what;
    EXPECT_EQ(what.find("alice"), std::string::npos) << what;
  }
  EXPECT_FALSE(sync_wait(client->backend().get(ja)));
  EXPECT_EQ(sync_wait(client->get(jb))->payload, R"({"who":"bob"})");
  EXPECT_EQ(sync_wait(client->get(jn))->payload, R"({"who":"nobody"})");
}

// The acceptance test of crypto-shredding: a copy of the database file (and
// its WAL) taken before the purge, opened afterwards with the same keyring
// and the same subject key store, cannot open the purged subject's jobs;
// every other subject's jobs still open.
TEST(SubjectErasure, CopyTakenBeforePurgeCannotOpenThePurgedSubject) {
  TempDir dir;
  FakeEnv env;
  fs::create_directory(dir.file("live"));
  fs::create_directory(dir.file("backup"));
  Sealed s(open_subject_key_dir(dir.file("subject-keys")));
  const std::string db = dir.file("live/q.db");
  JobId ja, jb, jn;
  {
    auto client = Client::open("sqlite://" + db, env, s.options());
    Queue q(client, "clinic");
    JobOptions a, b;
    a.subject = "patient-a";
    b.subject = "patient-b";
    ja = sync_wait(q.add("t", object{{"note", "A-private"}}, a));
    jb = sync_wait(q.add("t", object{{"note", "B-private"}}, b));
    jn = sync_wait(q.add("t", object{{"note", "no subject"}}));

    // The backup: the database file and its WAL, as they are now.
    for (const char* suffix : {"", "-wal"}) {
      if (fs::exists(db + suffix))
        fs::copy_file(db + suffix, dir.file(std::string("backup/q.db") + suffix));
    }
    ASSERT_TRUE(fs::exists(dir.file("backup/q.db-wal")));  // the jobs are in it

    auto r = sync_wait(security::erase_subject(client->backend(), client->codec(), "patient-a"));
    EXPECT_EQ(r.jobs, 1u);
    EXPECT_TRUE(r.key_destroyed);
    EXPECT_TRUE(r.scrubbed);
  }
  auto copy = Client::open("sqlite://" + dir.file("backup/q.db"), env, s.options());
  auto old_a = sync_wait(copy->backend().get(ja));
  ASSERT_TRUE(old_a) << "the copy holds the purged job (as a backup would)";
  try {
    sync_wait(copy->get(ja));
    ADD_FAILURE() << "the purged subject's job opened from the backup";
  } catch (const IntegrityError& e) {
    EXPECT_NE(std::string(e.what()).find(ja.str()), std::string::npos) << e.what();
  }
  EXPECT_EQ(sync_wait(copy->get(jb))->payload, R"({"note":"B-private"})");
  EXPECT_EQ(sync_wait(copy->get(jn))->payload, R"({"note":"no subject"})");
}

// A data-subject purge on SQLite leaves no byte of the purged jobs in the
// database file or its WAL: shown with the plain codec, where the marker is
// stored in the clear (the control: it is found before the purge), after
// the jobs went through claim, completion and failure (old row versions).
TEST(SubjectErasure, SqlitePurgeLeavesNoByteOfThePurgedJobsInTheFiles) {
  TempDir dir;
  FakeEnv env;
  const std::string marker = "MARKER-purge-4f1c9e-Jane-Roe";
  const std::string other = "OTHER-keep-7d2b01-John-Doe";
  auto client = Client::open("sqlite://" + dir.file("q.db"), env);
  Queue q(client, "q");
  JobOptions o;
  o.subject = "subject-17";
  std::vector<JobId> ids;
  for (int i = 0; i < 40; ++i)
    ids.push_back(sync_wait(q.add("t", object{{"m", marker}, {"i", i}, {"pad", std::string(300, 'p')}}, o)));
  for (int i = 0; i < 40; ++i) sync_wait(q.add("t", object{{"m", other}, {"i", i}}));
  // Rewrite some rows (claim, complete with the marker in the result, fail).
  ClaimRequest req{"q", "w", 30, 30'000, env.now_ms()};
  auto jobs = sync_wait(client->backend().claim(req));
  std::vector<Outcome> outs;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    Outcome out{jobs[i].id, jobs[i].lease.token,
                i % 2 ? Outcome::Kind::completed : Outcome::Kind::dead,
                "\"" + marker + "\"", marker, 0, env.now_ms()};
    outs.push_back(out);
  }
  sync_wait(client->backend().finish(outs));
  ASSERT_FALSE(found_in(dir.path(), marker, 12).empty()) << "control: the scan sees the marker";

  auto r = sync_wait(client->backend().purge_subject("subject-17"));
  EXPECT_EQ(r.jobs, 40u);
  EXPECT_TRUE(r.scrubbed);
  auto left = found_in(dir.path(), marker, 12);
  EXPECT_TRUE(left.empty()) << "marker bytes left in " << left.front();
  EXPECT_TRUE(found_in(dir.path(), "subject-17", 10).empty());
  EXPECT_FALSE(found_in(dir.path(), other, 12).empty());  // the others stay
  EXPECT_EQ(fs::file_size(dir.file("q.db-wal")), 0u);     // checkpointed and truncated
  auto counts = sync_wait(q.counts());
  std::uint64_t total = 0;
  for (auto n : counts) total += n;
  EXPECT_EQ(total, 40u);
  EXPECT_EQ(sync_wait(client->backend().purge_subject("subject-17")).jobs, 0u);
}

// With sealing: the stored envelopes of the purged jobs and the wrapped
// subject key are gone from every file.
TEST(SubjectErasure, SealedPurgeLeavesNeitherCiphertextNorKey) {
  TempDir dir;
  FakeEnv env;
  Sealed s(open_subject_key_dir(dir.file("sk")));
  auto client = Client::open("sqlite://" + dir.file("q.db"), env, s.options());
  Queue q(client, "q");
  JobOptions o;
  o.subject = "subject-9";
  JobId id = sync_wait(q.add("t", object{{"secret", std::string(500, 's')}}, o));
  const std::string stored = sync_wait(client->backend().get(id))->payload;
  const std::string index = s.codec->encode_subject("subject-9");
  const std::string wrapped = *s.subjects->get(index);
  ASSERT_FALSE(found_in(dir.path(), stored, 16).empty());
  ASSERT_FALSE(found_in(dir.file("sk"), wrapped, 16).empty());

  auto r = sync_wait(security::erase_subject(client->backend(), client->codec(), "subject-9"));
  EXPECT_EQ(r.jobs, 1u);
  EXPECT_TRUE(found_in(dir.path(), stored, 16).empty());
  EXPECT_TRUE(found_in(dir.file("sk"), wrapped, 16).empty());
  EXPECT_TRUE(found_in(dir.path(), index, 16).empty());
}

}  // namespace
}  // namespace asyncmq::testing
