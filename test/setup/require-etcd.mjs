// Runs before `npm test`: the HA tests (test/ha/) start their own etcd members, so they
// need the etcd server binary. When it is missing we install Debian's etcd-server (as
// root), or stop with one clear line, as require-memcached.mjs does for memcached.
// (Installing Debian's package may also start a system etcd on 127.0.0.1:2379; the
// tests never use it: they run their own members on free ports.)
import { execFileSync, spawnSync } from 'node:child_process';

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

const bin = process.env.RINGKV_ETCD_BIN;
if (bin ? !has(bin) : !has('etcd')) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (bin || !isRoot || !has('apt-get')) {
    console.error(`ringkv tests need etcd: run \`sudo apt-get install -y etcd-server\` (Debian/Ubuntu) and retry${bin ? ` (RINGKV_ETCD_BIN=${bin} is not runnable)` : ''}.`);
    process.exit(1);
  }
  console.log('pretest: installing Debian etcd-server (needed by the HA tests)...');
  execFileSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null'], {
    stdio: 'inherit',
  });
}
