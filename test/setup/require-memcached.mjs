// Runs before `npm test`: the differential tests compare ringkv with a real memcached.
// When it is missing we install Debian's package (as root), or stop with one clear line.
import { execFileSync, spawnSync } from 'node:child_process';

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

if (!has('memcached')) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !has('apt-get')) {
    console.error('ringkv tests need memcached: run `sudo apt-get install -y memcached` (Debian/Ubuntu) and retry.');
    process.exit(1);
  }
  console.log('pretest: installing Debian memcached (needed by the differential tests)...');
  execFileSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached >/dev/null'], {
    stdio: 'inherit',
  });
}
