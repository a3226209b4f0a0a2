import { Migration } from '@mikro-orm/migrations';

/** An execution's view finds the prune jobs its retention started by this key; without it, a scan of every job. */
export class Migration0005RetentionIndex extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create index jobs_after_execution_idx on jobs ((params->>'afterExecutionId')) where kind = 'prune'`);
  }
}
