/**
 * Exit statuses of the `disref` command, documented in `--help`. Where a
 * sysexits.h code fits, it is used.
 * @module
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  /** EX_UNAVAILABLE: the store could not be reached. */
  storeUnavailable: 69,
  /** EX_TEMPFAIL: the lock was held elsewhere until the timeout (or --no-wait). */
  lockNotAcquired: 75,
  /** The lease was lost while the command ran; the command was signalled. */
  leaseLost: 76,
  /** As in shells: the command could not be started. */
  commandNotRunnable: 127,
} as const;
