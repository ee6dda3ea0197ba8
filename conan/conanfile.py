# Conan 2 recipe for coraft. From the repository root:
#   conan create conan --build=missing
# Consumers then use find_package(coraft) and coraft::coraft, as with the Debian build.
import os

from conan import ConanFile
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy


class CoraftConan(ConanFile):
    name = "coraft"
    version = "0.1.0"
    license = "Apache-2.0"
    description = "Raft consensus for C++20 services: correct and fast"
    topics = ("raft", "consensus", "replication", "io_uring", "coroutines")
    settings = "os", "arch", "compiler", "build_type"
    options = {"shared": [True, False], "fPIC": [True, False]}
    default_options = {"shared": False, "fPIC": True}

    def export_sources(self):
        root = os.path.join(self.recipe_folder, "..")
        for pattern in ("CMakeLists.txt", "cmake/*", "include/*", "src/*", "schema/*"):
            copy(self, pattern, root, self.export_sources_folder)

    def requirements(self):
        # Headers of asio appear in coraft's public API; the rest are linked privately.
        self.requires("asio/1.22.1", transitive_headers=True)
        self.requires("capnproto/0.10.3")
        self.requires("liburing/2.3")
        self.requires("openssl/[>=3.0 <4]")

    def build_requirements(self):
        self.tool_requires("capnproto/0.10.3")  # the schema compiler, run at build time
        self.tool_requires("cmake/[>=3.22]")

    def validate(self):
        from conan.tools.build import check_min_cppstd
        check_min_cppstd(self, "20")
        if self.settings.os != "Linux":
            from conan.errors import ConanInvalidConfiguration
            raise ConanInvalidConfiguration("coraft needs Linux (io_uring, eventfd)")

    def config_options(self):
        if self.options.shared:
            self.options.rm_safe("fPIC")

    def layout(self):
        cmake_layout(self)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.variables["CORAFT_BUILD_TESTS"] = False
        tc.variables["CORAFT_BUILD_BENCH"] = False
        tc.variables["CORAFT_BUILD_APPS"] = False
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        CMake(self).install()

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "coraft")
        self.cpp_info.set_property("cmake_target_name", "coraft::coraft")
        self.cpp_info.set_property("pkg_config_name", "coraft")
        self.cpp_info.libs = ["coraft"]
        self.cpp_info.defines = ["ASIO_STANDALONE", "ASIO_NO_DEPRECATED", "ASIO_DISABLE_STD_ALIGNED_ALLOC"]
        self.cpp_info.system_libs = ["pthread"]
        self.cpp_info.requires = ["asio::asio", "capnproto::capnp", "liburing::liburing",
                                  "openssl::ssl", "openssl::crypto"]
