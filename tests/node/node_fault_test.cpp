#include "node/cluster.hpp"
