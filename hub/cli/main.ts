#!/usr/bin/env node
import { Command } from 'commander';
import { VERSION } from '../../shared/version.js';

/**
 * The operator's CLI. It talks to the hub's AdminService, which lands with the admin issue;
 * until then it offers only its version and help, and says where its commands are.
 */
const program = new Command('backhaulctl')
  .description('Operate a Backhaul hub from a terminal.')
  .version(VERSION)
  .addHelpText('after', '\nAdmin commands arrive with the AdminService. Until then, join tokens are created with:\n  backhaul-hub token create --ttl 1h');

program.parse();
