/** A restore refused its destination or its data; `code` is stable and becomes the job's error code. */
export class RestoreError extends Error {
  constructor(
    readonly code: 'DESTINATION_EXISTS' | 'DESTINATION_INVALID' | 'DATA_LOSS' | 'WRITE_FAILED' | 'CONVERT_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'RestoreError';
  }
}
