#!/usr/bin/env node
// The aiplat-plugin command. The CLI, like the SDK it uses, ships as TypeScript and runs through tsx.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/main.ts');
process.exitCode = await main(process.argv);
