// Helpers shared by the storage tests: temporary directories, running a coroutine to the end,
// deterministic entries and file damage.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <coraft/entry.hpp>

#include "storage/segmented_log.hpp"

namespace coraft::storage::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/coraft-storage-XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `a` on `io` until it finishes and returns its value.
template <class T>
T run(asio::io_context& io, asio::awaitable<T> a) {
  std::optional<T> out;
  std::exception_ptr failure;
  asio::co_spawn(io, std::move(a), [&](std::exception_ptr e, T v) {
    failure = e;
    if (!e) out.emplace(std::move(v));
  });
  io.restart();
  io.run_one();
  while (!out && !failure) io.run_one();
  if (failure) std::rethrow_exception(failure);
  return std::move(*out);
}

inline std::byte payload_byte(std::uint64_t index, std::size_t j) {
  return static_cast<std::byte>((index * 131 + j * 7 + (j >> 8)) & 0xff);
}

inline Entry make_entry(std::uint64_t index, std::uint64_t term, std::size_t size) {
  std::vector<std::byte> p(size);
  for (std::size_t j = 0; j < size; ++j) p[j] = payload_byte(index, j);
  auto type = size == 0 ? EntryType::noop : EntryType::normal;
  return Entry{Index(index), Term(term), type, Bytes::adopt(std::move(p))};
}

// Entries first..last, each of `size` bytes, in term `term`.
inline std::vector<Entry> make_entries(std::uint64_t first, std::uint64_t last, std::uint64_t term,
                                       std::size_t size) {
  std::vector<Entry> out;
  for (std::uint64_t i = first; i <= last; ++i) out.push_back(make_entry(i, term, size));
  return out;
}

inline bool payload_matches(const Entry& e, std::size_t size) {
  if (e.payload.size() != size) return false;
  for (std::size_t j = 0; j < size; ++j) {
    if (e.payload[j] != payload_byte(e.index.value(), j)) return false;
  }
  return true;
}

// Small segments so that tests roll over often.
inline LogOptions small_options(const std::string& dir) {
  LogOptions o;
  o.dir = dir;
  o.segment_bytes = 64 << 10;
  o.entry_bytes_max = 8 << 10;
  o.batch_bytes_max = 16 << 10;
  o.cache_bytes_max = 1 << 20;
  o.queue_bytes_max = 4 << 20;
  return o;
}

inline std::vector<std::string> files_in(const std::string& dir,
                                         const std::string& suffix = ".log") {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (n.size() >= suffix.size() && n.substr(n.size() - suffix.size()) == suffix) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline void write_bytes(const std::string& path, std::uint64_t offset,
                        const std::vector<std::byte>& b) {
  int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) std::abort();
  if (::pwrite(fd, b.data(), b.size(), static_cast<off_t>(offset)) !=
      static_cast<ssize_t>(b.size()))
    std::abort();
  ::close(fd);
}

inline std::vector<std::byte> read_bytes(const std::string& path, std::uint64_t offset,
                                         std::size_t n) {
  std::vector<std::byte> b(n);
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    std::fprintf(stderr, "cannot open %s\n", path.c_str());
    std::abort();
  }
  if (::pread(fd, b.data(), n, static_cast<off_t>(offset)) != static_cast<ssize_t>(n)) {
    std::fprintf(stderr, "short read of %s\n", path.c_str());
    std::abort();
  }
  ::close(fd);
  return b;
}

inline void flip_byte(const std::string& path, std::uint64_t offset) {
  auto b = read_bytes(path, offset, 1);
  b[0] ^= std::byte{0x5a};
  write_bytes(path, offset, b);
}

}  // namespace coraft::storage::test
