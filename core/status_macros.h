// Small status helpers. Debian's Abseil (20220623) ships neither
// ABSL_RETURN_IF_ERROR nor ASSIGN_OR_RETURN, so these are the project's one copy.
#ifndef SQUEEZE_CORE_STATUS_MACROS_H_
#define SQUEEZE_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define SQ_RETURN_IF_ERROR(expr)                  \
  do {                                            \
    const ::absl::Status sq_status_ = (expr);     \
    if (!sq_status_.ok()) return sq_status_;      \
  } while (0)

#define SQ_STATUS_CONCAT_INNER_(a, b) a##b
#define SQ_STATUS_CONCAT_(a, b) SQ_STATUS_CONCAT_INNER_(a, b)

// `SQ_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from an absl::StatusOr,
// or returns its status from the enclosing function.
#define SQ_ASSIGN_OR_RETURN(lhs, expr) \
  SQ_ASSIGN_OR_RETURN_IMPL_(SQ_STATUS_CONCAT_(sq_statusor_, __LINE__), lhs, expr)
#define SQ_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()

#endif  // SQUEEZE_CORE_STATUS_MACROS_H_
