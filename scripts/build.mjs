// Compiles src/ to dist/ and copies the non-TypeScript assets (Lua scripts)
// beside the code that loads them.
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
  stdio: 'inherit',
});
cpSync('src', 'dist', { recursive: true, filter: (path) => !path.endsWith('.ts') });
