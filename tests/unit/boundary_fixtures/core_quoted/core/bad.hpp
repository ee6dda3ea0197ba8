#include "storage/segmented_log.hpp"
