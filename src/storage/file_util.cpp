#include "storage/file_util.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace coraft::storage {

Error errno_error(int err, const std::string& what) {
  std::string detail = what + ": " + std::strerror(err);
  return Error(err == ENOSPC ? Errc::disk_full : Errc::storage_io, std::move(detail));
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  reset();
}

void Fd::reset() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

Result<void> make_dirs(const std::string& dir) {
  std::string path;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    path = dir.substr(0, pos);
    if (path.empty()) continue;
    if (::mkdir(path.c_str(), 0755) < 0 && errno != EEXIST)
      return errno_error(errno, "mkdir " + path);
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) < 0) return errno_error(errno, "stat " + dir);
  if (!S_ISDIR(st.st_mode)) return Error(Errc::storage_io, dir + " is not a directory");
  return {};
}

Result<void> fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "open directory " + dir);
  Fd owner(fd);
  if (::fsync(fd) < 0) return errno_error(errno, "fsync directory " + dir);
  return {};
}

Result<Fd> open_file(const std::string& path, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return errno_error(errno, "open " + path);
  return Fd(fd);
}

Result<Fd> lock_file(const std::string& path) {
  auto fd = open_file(path, O_RDWR | O_CREAT);
  if (!fd) return fd.error();
  while (::flock(fd->get(), LOCK_EX | LOCK_NB) < 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      return Error(Errc::storage_io, path + " is locked: another log has this directory open");
    }
    return errno_error(errno, "flock " + path);
  }
  return fd;
}

Result<std::vector<std::string>> list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return errno_error(errno, "opendir " + dir);
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_type == DT_REG || e->d_type == DT_UNKNOWN) out.emplace_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

Result<std::uint64_t> file_size(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return errno_error(errno, "fstat " + path);
  return static_cast<std::uint64_t>(st.st_size);
}

Result<void> pwrite_all(int fd, std::span<const std::byte> data, std::uint64_t offset,
                        const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(errno, "write " + path);
    if (n == 0) return errno_error(EIO, "write " + path);
    data = data.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

Result<void> pread_all(int fd, std::span<std::byte> data, std::uint64_t offset,
                       const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::pread(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(errno, "read " + path);
    if (n == 0) {
      return Error(Errc::storage_corrupt,
                   path + " offset " + std::to_string(offset) + ": file ends early");
    }
    data = data.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

Result<void> sync_file(int fd, const std::string& path) {
  if (::fsync(fd) < 0) return errno_error(errno, "fsync " + path);
  return {};
}

Result<void> rename_file(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) < 0)
    return errno_error(errno, "rename " + from + " to " + to);
  return {};
}

Result<void> remove_file(const std::string& path) {
  if (::unlink(path.c_str()) < 0 && errno != ENOENT) return errno_error(errno, "unlink " + path);
  return {};
}

Result<void> truncate_file(const std::string& path, std::uint64_t size) {
  if (::truncate(path.c_str(), static_cast<off_t>(size)) < 0) {
    return errno_error(errno, "truncate " + path);
  }
  return {};
}

Result<MappedFile> MappedFile::open(const std::string& path) {
  auto fd = open_file(path, O_RDONLY);
  if (!fd) return fd.error();
  auto size = file_size(fd->get(), path);
  if (!size) return size.error();
  MappedFile m;
  if (*size == 0) return m;
  void* p = ::mmap(nullptr, *size, PROT_READ, MAP_PRIVATE, fd->get(), 0);
  if (p == MAP_FAILED) return errno_error(errno, "mmap " + path);
  m.data_ = static_cast<const std::byte*>(p);
  m.size_ = *size;
  return m;
}

MappedFile::MappedFile(MappedFile&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

}  // namespace coraft::storage
