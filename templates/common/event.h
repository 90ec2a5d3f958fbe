/* The ring-buffer event: the one contract between the BPF side and policyc/audit/event.py.
 * struct policyc_event, its enums and struct policyc_counters are in abi.h, generated from
 * policyc/abi.py (tests/unit/test_abi.py pins every offset against clang's BTF). Only the
 * header and path_len + 1 bytes of `path` are sent. */
#ifndef POLICYC_EVENT_H
#define POLICYC_EVENT_H

#include "abi.h"

#define POLICYC_EVENT_HEADER_SIZE __builtin_offsetof(struct policyc_event, path)

#endif
