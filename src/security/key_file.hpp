// Editing a key file for `asyncmq keys add|activate|retire`: the file keeps
// its comments, order and formatting; only the changed lines differ.
//
// Every save is atomic and private: the new text goes to a temporary file
// (mode 0600, created exclusively) in the same directory, is fsynced and
// renamed over the old file, and the directory is fsynced; a reader (a
// worker reloading on SIGHUP or on the file watch) sees the old file or the
// new one, never half of one. Before writing, the new text is parsed with
// Keyring::parse, so an edit can never produce a file the keyring refuses.
// Editors of one file serialise on an flock of `<file>.lock`.
//
// Key bytes are held in memory only as long as the editor lives and are
// wiped when it is destroyed.
// Thread safety: none; one editor per command.
#pragma once

#include <asyncmq/security.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace asyncmq::security {

class KeyFileEditor {
 public:
  // Opens `path` (which must pass the checks of Keyring::load_file) or, if
  // `create_missing` and it does not exist, starts an empty file.
  KeyFileEditor(std::filesystem::path path, bool create_missing);
  ~KeyFileEditor();
  KeyFileEditor(const KeyFileEditor&) = delete;
  KeyFileEditor& operator=(const KeyFileEditor&) = delete;

  // The keys as they are now (edits included).
  std::shared_ptr<Keyring> ring() const;

  // Appends a new random 256-bit key in state decrypt-only, stamped with
  // `now_ms`. An empty `id` becomes "k" followed by the date and 4 random hex
  // digits. Returns the id. Throws InvalidArgument for a bad id, Conflict if
  // the id exists.
  // With `index`, the key is the blind-index key instead (Conflict if the
  // file has one).
  std::string add(std::string id, std::int64_t now_ms, bool index = false);
  // Sets a key's role; `primary` demotes the previous primary to
  // decrypt-only. Throws NotFound.
  void set_state(const std::string& id, KeyState state);
  // Writes the file atomically (see above).
  void save();

 private:
  std::string text() const;
  std::filesystem::path path_;
  std::vector<std::string> lines_;  // without their '\n'
  int lock_fd_ = -1;
};

}  // namespace asyncmq::security
