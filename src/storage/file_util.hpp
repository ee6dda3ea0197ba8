// Thin, error-returning wrappers over the POSIX file calls the storage module makes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <coraft/result.hpp>

namespace coraft::storage {

// An errno as an Error: ENOSPC becomes disk_full, anything else storage_io. `what` names the
// operation and file, e.g. "fdatasync /data/open-...log".
[[nodiscard]] Error errno_error(int err, const std::string& what);

// A file descriptor closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset() noexcept;

 private:
  int fd_ = -1;
};

[[nodiscard]] std::string join_path(const std::string& dir, const std::string& name);
[[nodiscard]] Result<void> make_dirs(const std::string& dir);
[[nodiscard]] Result<void> fsync_dir(const std::string& dir);
[[nodiscard]] Result<Fd> open_file(const std::string& path, int flags, int mode = 0644);
// Opens (creating) `path` and takes an exclusive flock on it, held until the Fd closes. Fails
// with storage_io, naming the file, when another open file description holds it (another
// process, or the same process through another open).
[[nodiscard]] Result<Fd> lock_file(const std::string& path);
// Every regular file name in `dir`.
[[nodiscard]] Result<std::vector<std::string>> list_dir(const std::string& dir);
[[nodiscard]] Result<std::uint64_t> file_size(int fd, const std::string& path);
[[nodiscard]] Result<void> pwrite_all(int fd, std::span<const std::byte> data, std::uint64_t offset,
                                      const std::string& path);
// Reads exactly data.size() bytes; a short file is storage_corrupt.
[[nodiscard]] Result<void> pread_all(int fd, std::span<std::byte> data, std::uint64_t offset,
                                     const std::string& path);
[[nodiscard]] Result<void> sync_file(int fd, const std::string& path);
[[nodiscard]] Result<void> rename_file(const std::string& from, const std::string& to);
[[nodiscard]] Result<void> remove_file(const std::string& path);
[[nodiscard]] Result<void> truncate_file(const std::string& path, std::uint64_t size);

// A read-only mapping of a whole file (empty files map to an empty span).
class MappedFile {
 public:
  static Result<MappedFile> open(const std::string& path);
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&&) = delete;
  MappedFile(const MappedFile&) = delete;
  ~MappedFile();
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }

 private:
  MappedFile() = default;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace coraft::storage
