// The snapshot store: complete snapshots in dir/snapshots, written atomically.
//
// FILE FORMAT: snap-IIIIIIIIIIIIIIIIIIII-TTTTTTTTTTTTTTTTTTTT.snap (last index and term, decimal,
// 20 digits), holding a 64-byte header, the encoded configuration, then the data:
//   0   8  magic "coraftSN"
//   8   4  format version, 1
//   12  4  CRC32C of bytes 0..63 computed with this field zero
//   16  8  last index
//   24  8  last term
//   32  4  configuration bytes C (encode_configuration)
//   36  4  zero
//   40  8  data bytes D
//   48  4  CRC32C of the configuration bytes followed by the data bytes
//   52 12  zero
// The file is exactly 64 + C + D bytes.
//
// A snapshot is written (or received) into NAME.tmp, its header written last, fsynced, renamed
// to NAME, and the directory fsynced. A .tmp file is never read as a snapshot and is deleted on
// open. A named file whose size or CRCs do not match, or whose header's last index and term
// differ from its name's, is reported as damaged with its offset.
// After each new snapshot, all but the newest `keep` are deleted.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <coraft/bytes.hpp>
#include <coraft/membership.hpp>
#include <coraft/result.hpp>

#include "storage/file_util.hpp"

namespace coraft::storage {

struct SnapshotInfo {
  SnapshotMeta meta;
  std::string path;
  std::uint64_t data_bytes = 0;
  std::uint64_t data_offset = 0;  // where the data starts in the file (set by verify())
  std::uint64_t file_bytes = 0;   // the whole file (set by verify())
};

struct Snapshot {
  SnapshotMeta meta;
  Bytes data;
};

class SnapshotStore {
 public:
  // Opens (creating) dir/snapshots and deletes leftover .tmp files. Blocking, like every call
  // here: snapshots are large, so run these off the event loop.
  [[nodiscard]] static Result<SnapshotStore> open(const std::string& dir, std::uint32_t keep = 2);

  // A store for reading only: nothing is created or deleted.
  [[nodiscard]] static SnapshotStore open_read_only(const std::string& dir);

  class Writer {
   public:
    Writer(Writer&&) noexcept = default;
    Writer& operator=(Writer&&) noexcept = default;
    // Deletes the temporary file unless finish() succeeded.
    ~Writer();
    [[nodiscard]] Result<void> write(std::span<const std::byte> data);
    // Makes the snapshot durable and visible, then prunes old ones.
    [[nodiscard]] Result<SnapshotInfo> finish();

   private:
    friend class SnapshotStore;
    Writer() = default;
    std::string dir_;
    std::uint32_t keep_ = 2;
    SnapshotMeta meta_;
    Bytes config_;
    std::string tmp_path_;
    std::string final_path_;
    Fd fd_;
    std::uint64_t data_bytes_ = 0;
    std::uint32_t crc_ = 0;
  };

  [[nodiscard]] Result<Writer> begin(const SnapshotMeta& meta);

  // Another server's snapshot file, received in pieces: the exact bytes of its file, staged in
  // this store's directory under a .tmp name (so a restart deletes a stream left half done).
  class Receiver {
   public:
    Receiver(Receiver&&) noexcept = default;
    Receiver& operator=(Receiver&&) noexcept = default;
    // Deletes the staging file unless adopt() succeeded.
    ~Receiver();
    // Writes `data` at `offset`, which must be received(). Durable only after sync().
    [[nodiscard]] Result<void> write(std::uint64_t offset, std::span<const std::byte> data);
    // Makes everything written so far durable (one fdatasync for any number of writes).
    [[nodiscard]] Result<void> sync();
    [[nodiscard]] std::uint64_t received() const noexcept { return received_; }
    [[nodiscard]] Index last_index() const noexcept { return last_; }
    [[nodiscard]] Term last_term() const noexcept { return term_; }
    // Checks the whole staged file (verify()) and that it is the snapshot the stream named.
    [[nodiscard]] Result<SnapshotInfo> check(std::uint64_t bytes_max) const;
    // Makes the staged file the store's snapshot of its name, durably, and prunes old ones.
    [[nodiscard]] Result<SnapshotInfo> adopt();

   private:
    friend class SnapshotStore;
    Receiver() = default;
    std::string dir_;
    std::uint32_t keep_ = 2;
    Index last_;
    Term term_;
    std::string tmp_path_;
    std::string final_path_;
    Fd fd_;
    std::uint64_t received_ = 0;
  };

  // Stages a snapshot of (last, term) received from another server.
  [[nodiscard]] Result<Receiver> receive(Index last, Term term);

  // Checks a snapshot file without holding it in memory: header, size, CRC and name, read in
  // blocks. Errors as load().
  [[nodiscard]] static Result<SnapshotInfo> verify(const std::string& path,
                                                   std::uint64_t bytes_max);

  // Where the store keeps the snapshot of (last, term).
  [[nodiscard]] std::string path_of(Index last, Term term) const;

  // Complete snapshots by name, newest first. Damaged files are listed too; load() finds them.
  [[nodiscard]] Result<std::vector<SnapshotInfo>> list() const;
  // Reads and checks the whole file. Errors: storage_corrupt naming file and offset, too_large
  // when the data is larger than `bytes_max`.
  [[nodiscard]] static Result<Snapshot> load(const std::string& path, std::uint64_t bytes_max);
  // The newest snapshot, if any, checked as load() does.
  [[nodiscard]] Result<std::optional<Snapshot>> load_latest(std::uint64_t bytes_max) const;
  [[nodiscard]] const std::string& dir() const noexcept { return dir_; }

 private:
  [[nodiscard]] static Result<void> prune(const std::string& dir, std::uint32_t keep);
  std::string dir_;
  std::uint32_t keep_ = 2;
};

}  // namespace coraft::storage
