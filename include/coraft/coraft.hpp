// The umbrella header: everything a coraft user needs.
#pragma once

#include <coraft/assert.hpp>
#include <coraft/bytes.hpp>
#include <coraft/entry.hpp>
#include <coraft/error.hpp>
#include <coraft/log.hpp>
#include <coraft/membership.hpp>
#include <coraft/result.hpp>
#include <coraft/types.hpp>
#include <coraft/version.hpp>
