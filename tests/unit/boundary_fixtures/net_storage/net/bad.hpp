#include "storage/hard_state.hpp"
