/* Return codes of the C ABI.
 *
 * The values are tokenmem::StatusCode's (common/.../status.h) and are
 * frozen: they travel through the C ABI and the control protocol. Every
 * C function that can fail returns one of them as an int; 0 is success. */
#ifndef TOKENMEM_TM_STATUS_H_
#define TOKENMEM_TM_STATUS_H_

typedef enum tm_status {
  TM_OK = 0,
  TM_NOT_FOUND = 1,        /* a miss: an answer, not a failure */
  TM_INVALID_ARGUMENT = 2, /* bad input; nothing was changed */
  TM_ALREADY_EXISTS = 3,
  TM_RESOURCE_EXHAUSTED = 4, /* quota or capacity exceeded */
  TM_PERMISSION_DENIED = 5,
  TM_FAILED_PRECONDITION = 6,
  TM_CORRUPTION = 7,
  TM_IO_ERROR = 8,
  TM_UNAVAILABLE = 9,
  TM_INTERNAL = 10
} tm_status;

#endif /* TOKENMEM_TM_STATUS_H_ */
