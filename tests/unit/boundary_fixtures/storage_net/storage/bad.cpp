#include "net/transport.hpp"
