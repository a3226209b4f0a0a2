import type { MigrationObject } from '@mikro-orm/core';
import { Migration0001Foundation } from './0001-foundation.js';
import { Migration0002JobsAndBackups } from './0002-jobs-and-backups.js';
import { Migration0003Lifecycle } from './0003-lifecycle.js';
import { Migration0004Scheduling } from './0004-scheduling.js';
import { Migration0005RetentionIndex } from './0005-retention-index.js';

/** Every migration, in order. Listed explicitly so the compiled hub needs no file globbing. */
export const migrationsList: MigrationObject[] = [
  { name: '0001-foundation', class: Migration0001Foundation },
  { name: '0002-jobs-and-backups', class: Migration0002JobsAndBackups },
  { name: '0003-lifecycle', class: Migration0003Lifecycle },
  { name: '0004-scheduling', class: Migration0004Scheduling },
  { name: '0005-retention-index', class: Migration0005RetentionIndex },
];
