#!/usr/bin/env node
/**
 * The `disref` command line.
 * @module
 */
import { readFileSync } from 'node:fs';
import { parseArgs, styleText } from 'node:util';
import { benchCommand } from './bench-command.js';
import { runDemo } from './demo.js';
import { InvalidArgumentError } from '../errors.js';
import { EXIT } from './exit-codes.js';
import { lockCommand } from './lock-command.js';
import { statusCommand } from './status-command.js';

const HELP = `disref: distributed locks and reference counting

Usage:
  disref demo                        run the seed scenario on the embedded store
  disref lock NAME [options] -- CMD  run CMD while holding the lock NAME
  disref status [--json] [PREFIX]     show locks, references and processes in the store
  disref bench [--url URL] [--quick] measure the store from this machine
  disref --version                   print the version
  disref --help                      print this help
  disref COMMAND --help              help on one command

Environment: DISREF_URL is the store URL when --url is not given.
Exit codes: 0 success, 1 the command failed, 2 bad usage; see each command's help.
`;

const DEMO_HELP = `Usage: disref demo

Two services hold references to one record on the embedded in-memory store
and add their parts concurrently under the record's lock; the last one out
writes the whole record to the database, once.
`;

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined ? EXIT.usage : EXIT.ok;
  }
  if (command === '--version' || command === '-v') {
    const pkg = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return EXIT.ok;
  }
  switch (command) {
    case 'demo':
      return demo(rest);
    case 'lock':
      return lockCommand(rest);
    case 'bench':
      return benchCommand(rest);
    case 'status':
      return statusCommand(rest);
    default:
      process.stderr.write(
        `disref: unknown command ${JSON.stringify(command)}; see disref --help\n`,
      );
      return EXIT.usage;
  }
}

async function demo(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: { help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(DEMO_HELP);
    return EXIT.ok;
  }
  process.stdout.write(`${styleText('bold', 'disref demo')}: two services complete one record\n\n`);
  const result = await runDemo((line) => {
    process.stdout.write(`${line}\n`);
  });
  process.stdout.write('\n');
  for (const write of result.writes) {
    process.stdout.write(
      `database: record written by ${write.by} with fence ${String(write.fence)}: ${JSON.stringify(write.record)}\n`,
    );
  }
  const ok = result.writes.length === 1;
  process.stdout.write(
    ok
      ? `${styleText('green', 'ok')}: exactly one write\n`
      : `${styleText('red', 'error')}: ${String(result.writes.length)} writes, expected exactly one\n`,
  );
  return ok ? EXIT.ok : EXIT.failure;
}

main(process.argv.slice(2)).then(
  (code) => {
    // Exit now: a connection to an unreachable store must not keep the command alive
    // (stdout and stderr are synchronous for files and pipes on Linux).
    process.exit(code);
  },
  (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    // parseArgs rejects unknown or malformed options with ERR_PARSE_ARGS_* codes.
    const usage =
      error instanceof InvalidArgumentError ||
      String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`disref: ${message}${usage ? '; see disref --help' : ''}\n`);
    process.exitCode = usage ? EXIT.usage : EXIT.failure;
  },
);
