/**
 * The local executor's supervisor: one small process per replica, between the core and the user's
 * command, so that a core restart loses nothing (ARCHITECTURE §7).
 *
 *   node supervisor.mjs <runDir>
 *
 * It reads `<runDir>/launch.json` ({ command, env, workingDir?, graceSeconds }), starts the command in
 * its own process group with stdout and stderr appended straight to `<runDir>/output.log` (the child
 * owns the file descriptor, so its output survives the supervisor), and records the outcome in
 * `<runDir>/exit.json`. The core only talks to it through files and signals:
 *
 *   supervisor.pid, child.pid   written at start (the child's pid is also its process group id)
 *   stdout                      one line, `started <pid>` (`started 0` when the command could not start)
 *   SIGTERM / SIGINT            SIGTERM to the child's group, then SIGKILL after the grace period
 *                               (`stop.json` { graceSeconds }, when present, overrides launch.json's)
 *   exit.json                   { exitCode, signal, finishedAt, error? }, written atomically
 *
 * Plain JavaScript with Node built-ins only: it starts once per replica and must start fast.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const runDir = process.argv[2];
if (!runDir) {
  process.stderr.write('usage: node supervisor.mjs <runDir>\n');
  process.exit(2);
}
const file = (name) => join(runDir, name);

// The core reads one line and may be gone afterwards: a closed pipe must not end the replica.
process.stdout.on('error', () => {});
// There is no terminal (the executor starts us in our own session), but a stray SIGHUP must not end the replica either.
process.on('SIGHUP', () => {});

/** The child's pid (= its process group id) once it runs. */
let childPid = 0;
let childExited = false;
let stopRequested = false;
let killTimer;

// Installed before anything else, so a stop that arrives while we are still starting is not lost.
process.on('SIGTERM', requestStop);
process.on('SIGINT', requestStop);

const launch = JSON.parse(readFileSync(file('launch.json'), 'utf8'));
writeFileSync(file('supervisor.pid'), `${process.pid}\n`);

const [cmd, ...args] = launch.command;
const cwd = launch.workingDir ? resolve(runDir, launch.workingDir) : runDir;

if (!isDirectory(cwd)) {
  // spawn would say "spawn <cmd> ENOENT", blaming the command.
  cannotStart({ code: 'ENOENT', message: `working directory "${cwd}" does not exist` });
} else {
  const out = openSync(file('output.log'), 'a');
  let child;
  try {
    child = spawn(cmd, args, { cwd, env: launch.env, stdio: ['ignore', out, out], detached: true });
  } catch (err) {
    cannotStart(err);
  } finally {
    // The child holds its own copy of the descriptor.
    closeSync(out);
  }
  if (child) {
    // ENOENT and EACCES arrive as an 'error' event, without a pid.
    child.once('error', (err) => {
      if (child.pid === undefined) cannotStart(err);
    });
    child.once('exit', onChildExit);
    if (child.pid !== undefined) onChildStarted(child.pid);
  }
}

function onChildStarted(pid) {
  childPid = pid;
  writeFileSync(file('child.pid'), `${pid}\n`);
  process.stdout.write(`started ${pid}\n`);
  if (stopRequested) requestStop();
}

function onChildExit(exitCode, signal) {
  childExited = true;
  clearTimeout(killTimer);
  // The replica is over: whatever it left running in its group (background helpers, data loaders)
  // would hold its cards and its output file.
  signalGroup('SIGKILL');
  writeExit({ exitCode, signal });
  process.exit(0);
}

/** SIGTERM to the group now, SIGKILL to the group once the grace period is over. */
function requestStop() {
  stopRequested = true;
  if (!childPid || childExited) return;
  signalGroup('SIGTERM');
  killTimer ??= setTimeout(() => signalGroup('SIGKILL'), graceSeconds() * 1000);
}

function graceSeconds() {
  try {
    const { graceSeconds } = JSON.parse(readFileSync(file('stop.json'), 'utf8'));
    if (Number.isFinite(graceSeconds) && graceSeconds >= 0) return graceSeconds;
  } catch {
    // No stop.json: a plain SIGTERM (a person, or the host shutting down).
  }
  return Number.isFinite(launch.graceSeconds) && launch.graceSeconds >= 0 ? launch.graceSeconds : 10;
}

function signalGroup(signal) {
  // Never 0 or 1: process.kill(-0) would signal our own group.
  if (childPid <= 1) return;
  try {
    process.kill(-childPid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** The command never ran: say why where its output goes, record shell-style 127/126, and leave. */
function cannotStart(err) {
  const exitCode = err.code === 'EACCES' || err.code === 'EPERM' ? 126 : 127;
  const reason =
    err.code === 'ENOENT' && !err.message.startsWith('working directory')
      ? 'no such file or directory (is it installed, and on PATH?)'
      : err.code === 'EACCES'
        ? 'permission denied (is it executable?)'
        : err.message;
  appendFileSync(file('output.log'), `aiplat: cannot start "${cmd}": ${reason}\n`);
  writeExit({ exitCode, signal: null, error: reason });
  process.stdout.write('started 0\n');
  process.exit(0);
}

/** Write temp + rename, so the core never reads half a record. */
function writeExit(record) {
  const tmp = file(`exit.json.${process.pid}.tmp`);
  writeFileSync(tmp, `${JSON.stringify({ ...record, finishedAt: new Date().toISOString() })}\n`);
  renameSync(tmp, file('exit.json'));
}

function isDirectory(path) {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
