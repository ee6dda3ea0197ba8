#include "node/node_impl.hpp"
