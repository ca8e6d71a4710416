/**
 * `deno task test:image`: builds deploy/Dockerfile, unchanged, on a local stand-in for the official
 * Deno image, runs it the way deploy/k8s and deploy/systemd do, and checks what it does. Prints
 * `image: N/M checks passed`; exits 0 only when all pass. See deploy/README.md, "Testing the image".
 *
 * Needs root (apt-get, dockerd, debootstrap), Postgres at 127.0.0.1:5432 with trust auth, Debian's
 * package mirror and the npm registry. Every container uses the host network and talks only to
 * 127.0.0.1. It removes every container, image, database and process it made, and stops the
 * Docker daemon if it started one.
 */
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

const USAGE = `usage: deno task test:image [--suite trixie] [--scale 110] [--keep]
  --suite S   Debian release of the stand-in base image (default trixie: debian:stable-slim's)
  --scale X   size of the large world (X × 47,000 pairs; default 110, about 5.2M)
  --keep      keep the work directory and the images built (the daemon is still stopped if started)`;

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
/** Where deploy/ is read from: the clean clone once it exists, so files and image agree. */
let SRC = ROOT;
const PORT = {
  simBig: 2850,
  sim: 2851,
  simFailing: 2852,
  server: 2853,
  unit: 2854,
  gate: 2855,
  closed: 2899,
} as const;
const PG_URL = Deno.env.get("IMAGE_TEST_PG_URL") ?? "postgres://postgres@127.0.0.1:5432/postgres";
const ID = `bfimg${Deno.pid}`;
const UNIT_UID = 61900; // a uid in systemd's DynamicUser range, with no passwd entry in the image
const FAILING = "app.bsky.actor.profile";
const NARROW = "app.bsky.feed.post";

// --- checks ------------------------------------------------------------------------------------

const PLAN: [string, string][] = [
  [
    "base.shape",
    "stand-in: Debian, pinned deno on PATH, user deno 1993:1993, DENO_DIR owned by it",
  ],
  ["base.entry", "stand-in: tini is PID 1; entrypoint routes commands like the official one"],
  ["image.build", "image builds from a clean clone (deploy/Dockerfile unchanged, --network host)"],
  ["image.context", "build context: no .env, .git, tests, deploy or data in /app"],
  [
    "image.classic",
    "classic builder (DOCKER_BUILDKIT=0, no per-Dockerfile ignore): no .env or data/",
  ],
  ["image.user", "runs as uid/gid 1993 (image default and the live server process)"],
  ["image.readonly", "read-only root filesystem: / not writable, /data and /tmp are"],
  ["image.jemalloc", "jemalloc is loaded in the deno process (/proc/PID/maps)"],
  ["image.v8flags", "the image's V8 flags are in effect (256 MB old space)"],
  ["image.healthcheck", "the image's HEALTHCHECK command passes in the running container"],
  ["deploy.probes", "Deployment: /healthz and /readyz within the startup probe's budget"],
  ["deploy.live", "Deployment: the live consumer connects to the (sim's) firehose"],
  ["deploy.start", "Deployment: a backfill started through the admin API runs"],
  ["cron.busy", "CronJob `status catch-up` while a backfill runs: exit 1 (409)"],
  ["signal.stop", "docker stop mid-run (SIGTERM through tini): exit 0 within the grace period"],
  ["signal.resume", "a new container on the same volume resumes the run by itself"],
  ["deploy.counts", "exact counts: every collection complete, pairs = the sim's"],
  ["deploy.xrpc", "XRPC read-back equals the sim, collection by collection"],
  ["deploy.memory", "never OOM-killed; anonymous memory under half the Deployment's limit"],
  ["cron.trigger", "CronJob `status catch-up`: exit 0, the server runs the catch-up"],
  ["cron.token", "CronJob with a wrong token: exit 1"],
  ["cron.down", "CronJob with the server unreachable: exit 1"],
  ["signal.idle", "docker stop of the idle server: exit 0"],
  ["signal.startup", "SIGTERM during startup (migrations held at Postgres): exit 0, no server"],
  ["batch.catchup", "k8s-batch CronJob `backfill --catch-up` on the volume: exit 0"],
  ["job.complete", "Job `backfill`: exit 0, counts exact in Postgres"],
  ["job.failed", "Job with a collection the source refuses (403): exit 1, names it"],
  ["job.badargs", "Job with bad arguments or a bad variable: exit 2, one line"],
  ["offline.start", "--network none: the image's CMD migrates the embedded Postgres and serves"],
  ["offline.stop", "--network none: docker stop exits 0"],
  ["unit.narrow", "backfill-oneshot.service, BACKFILL_ARGS=--collection: exit 0, only that one"],
  ["unit.oneshot", "backfill-oneshot.service: exit 0, counts exact"],
  ["unit.server", "backfill.service: /healthz and /readyz, jemalloc, dynamic uid"],
  ["unit.trigger", "backfill-catchup-trigger.service: exit 0, the server runs the catch-up"],
  ["unit.stop", "backfill.service: SIGTERM stops it within TimeoutStopSec"],
  ["unit.catchup", "backfill-catchup.service: exit 0 on the index"],
];
const results = new Map<string, { ok: boolean; detail: string }>();

/** Runs one check; its detail (figures) or its error is printed either way. */
async function check(id: string, fn: () => Promise<string> | string): Promise<boolean> {
  const title = PLAN.find(([k]) => k === id)?.[1];
  if (!title) throw new Error(`unknown check ${id}`);
  try {
    const detail = await fn();
    results.set(id, { ok: true, detail });
    console.log(`ok    ${title}: ${detail}`);
    return true;
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    results.set(id, { ok: false, detail });
    console.log(`FAIL  ${title}: ${detail}`);
    return false;
  }
}

/** Throws `message` unless `cond`. */
function expect(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

/** An error that ends a wait at once instead of being retried until its deadline. */
class Fatal extends Error {}

/** Throws a {@link Fatal} `message` unless `cond`. */
function fatalUnless(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Fatal(message);
}

function note(line: string) {
  console.log(`·     ${line}`);
}

// --- processes ---------------------------------------------------------------------------------

interface Out {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a command to its end (killed at `timeoutMs`), capturing its output. */
async function run(
  argv: string[],
  opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<Out> {
  const t0 = performance.now();
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: opts.env,
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timeoutMs = opts.timeoutMs ?? 600_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  const res = {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    seconds: (performance.now() - t0) / 1000,
  };
  if (timedOut) {
    throw new Error(`${argv.slice(0, 4).join(" ")}… did not finish within ${timeoutMs / 1000} s`);
  }
  return res;
}

/** Like run(), but a non-zero exit is an error carrying the end of stderr. */
async function must(argv: string[], opts: Parameters<typeof run>[1] = {}): Promise<Out> {
  const res = await run(argv, opts);
  if (res.code !== 0) {
    const tail = (res.stderr || res.stdout).trim().split("\n").slice(-5).join(" | ");
    throw new Error(`${argv.slice(0, 5).join(" ")}… exited ${res.code}: ${tail}`);
  }
  return res;
}

async function commandExists(name: string): Promise<boolean> {
  return (await run(["sh", "-c", `command -v ${name}`])).code === 0;
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

const cleanups: { what: string; fn: () => Promise<unknown> }[] = [];

/** Registers an undo step; they run last-first at the end. */
function onCleanup(what: string, fn: () => Promise<unknown>) {
  cleanups.push({ what, fn });
}

async function cleanUp(): Promise<void> {
  while (cleanups.length) {
    const { what, fn } = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      console.log(`·     cleanup: ${what}: ${(err as Error).message}`);
    }
  }
}

/**
 * A deadline for ingesting `pairs`: the fixed one for the default world, or as long as a floor of
 * 20,000 pairs/s needs (a hang guard, not a speed check), so `--scale 3200` (150M) gets its time.
 */
function ingestDeadlineMs(pairs: number, fixedMs: number): number {
  return Math.max(fixedMs, Math.ceil(pairs / 20_000) * 1000);
}

/** Polls `probe` every 250 ms until it returns a value; throws naming `what` at the deadline. */
async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < end) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      if (err instanceof Fatal) throw err;
      last = `: ${(err as Error).message}`;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last}`);
}

async function httpGet(url: string, token?: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: await res.text() };
}

// --- setup: packages and the daemon ------------------------------------------------------------

let DOCKER = "docker";
const dockerEnv: Record<string, string> = { DOCKER_BUILDKIT: "1" };

function docker(args: string[], timeoutMs?: number): Promise<Out> {
  return run([DOCKER, ...args], { env: dockerEnv, timeoutMs });
}

function mustDocker(args: string[], timeoutMs?: number): Promise<Out> {
  return must([DOCKER, ...args], { env: dockerEnv, timeoutMs });
}

async function ensurePackages(): Promise<void> {
  const missing: string[] = [];
  if (!await commandExists("dockerd")) missing.push("docker.io");
  if (!await commandExists("debootstrap")) missing.push("debootstrap");
  if (!await fileExists("/usr/bin/tini-static")) missing.push("tini");
  if (missing.length === 0) return;
  note(`installing ${missing.join(", ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = ["apt-get", "install", "-y", "-q", ...missing];
  if ((await run(install, { env })).code !== 0) {
    await must(["apt-get", "update", "-q"], { env });
    await must(install, { env });
  }
}

/** Uses a running daemon, or starts a private one (own socket and data root) and stops it later. */
async function ensureDaemon(work: string): Promise<void> {
  // The client from docker.io builds with BuildKit without the buildx plugin.
  if (await fileExists("/usr/bin/docker")) DOCKER = "/usr/bin/docker";
  if ((await docker(["info"], 30_000)).code === 0) {
    note("using the Docker daemon that was already running");
    return;
  }
  const dir = `${work}/docker`;
  await Deno.mkdir(dir, { recursive: true });
  const log = await Deno.open(`${work}/logs/dockerd.log`, { write: true, create: true });
  const daemon = new Deno.Command("dockerd", {
    args: [
      "--bridge=none",
      "--iptables=false",
      `--host=unix://${dir}/docker.sock`,
      `--data-root=${dir}/root`,
      `--exec-root=${dir}/exec`,
      `--pidfile=${dir}/docker.pid`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  daemon.stderr.pipeTo(log.writable).catch(() => {});
  dockerEnv.DOCKER_HOST = `unix://${dir}/docker.sock`;
  onCleanup("stop dockerd", async () => {
    daemon.kill("SIGTERM");
    const end = setTimeout(() => daemon.kill("SIGKILL"), 60_000);
    await daemon.status;
    clearTimeout(end);
    // dockerd leaves its default network namespace bind-mounted under the exec root.
    for (const m of await mountsUnder(`${dir}/exec`)) await must(["umount", m]);
    note("stopped the Docker daemon this test started");
  });
  await waitFor("dockerd to answer", 60_000, async () => {
    const st = await Promise.race([daemon.status, new Promise((r) => setTimeout(r, 10))]);
    fatalUnless(!st, `dockerd exited early, see ${work}/logs/dockerd.log`);
    return (await docker(["info"], 10_000)).code === 0 ? true : undefined;
  });
  note(`started dockerd (--bridge=none --iptables=false, data root ${dir}/root)`);
}

// --- the stand-in base image and the image ------------------------------------------------------

interface Images {
  version: string;
  base: string;
  image: string;
  denoBinary: string;
  clone: string;
}

/** The deno binary of `version`, from its npm package (`@deno/linux-<arch>-glibc`). */
async function denoFromNpm(version: string, work: string): Promise<string> {
  const arch = Deno.build.arch === "aarch64" ? "arm64" : "x64";
  const dir = `${work}/npm-deno`;
  await Deno.mkdir(dir, { recursive: true });
  const pack = await must(
    ["npm", "pack", "--silent", `@deno/linux-${arch}-glibc@${version}`, "--pack-destination", dir],
    { cwd: dir },
  );
  const tgz = pack.stdout.trim().split("\n").pop()!;
  await must(["tar", "-xzf", `${dir}/${tgz}`, "-C", dir]);
  const bin = `${dir}/package/deno`;
  const v = await must([bin, "--version"]);
  expect(v.stdout.startsWith(`deno ${version} `), `npm package gave ${v.stdout.split("\n")[0]}`);
  return bin;
}

async function mountsUnder(dir: string): Promise<string[]> {
  const mounts = await Deno.readTextFile("/proc/mounts");
  return mounts.split("\n").map((l) => l.split(" ")[1]).filter((m) => m?.startsWith(dir + "/"));
}

/** No mount may remain under `dir` before it is deleted (debootstrap mounts /proc in its target). */
async function assertNoMounts(dir: string): Promise<void> {
  const inside = await mountsUnder(dir);
  expect(inside.length === 0, `still mounted under ${dir}: ${inside.join(", ")}`);
}

async function imageExists(ref: string): Promise<boolean> {
  return (await docker(["image", "inspect", ref])).code === 0;
}

/** Removes an image this test made, unless --keep. */
function removeImageLater(ref: string, keep: boolean) {
  if (keep) return;
  onCleanup(`remove image ${ref}`, () => mustDocker(["rmi", "-f", ref]));
}

async function buildStandIn(
  base: string,
  version: string,
  suite: string,
  deno: string,
  work: string,
  keep: boolean,
): Promise<void> {
  const rootfs = `${work}/rootfs`;
  note(`debootstrap --variant=minbase ${suite} (log: ${work}/logs/debootstrap.log)`);
  const boot = await run(["debootstrap", "--variant=minbase", suite, rootfs], {
    timeoutMs: 900_000,
  });
  await Deno.writeTextFile(`${work}/logs/debootstrap.log`, boot.stdout + boot.stderr);
  await assertNoMounts(rootfs);
  expect(boot.code === 0, `debootstrap exited ${boot.code}, see ${work}/logs/debootstrap.log`);
  note(`debootstrap took ${boot.seconds.toFixed(0)} s`);
  const rootImage = `${ID}-rootfs:${suite}`;
  await must([
    "bash",
    "-o",
    "pipefail",
    "-c",
    `tar -C ${rootfs} -c . | ${DOCKER} import - ${rootImage}`,
  ], {
    env: dockerEnv,
  });
  removeImageLater(rootImage, keep);
  await Deno.remove(rootfs, { recursive: true });

  const ctx = `${work}/stand-in`;
  await Deno.mkdir(ctx, { recursive: true });
  for (const f of ["Dockerfile", "docker-entrypoint.sh"]) {
    await Deno.copyFile(`${SRC}/deploy/stand-in/${f}`, `${ctx}/${f}`);
  }
  await Deno.copyFile(deno, `${ctx}/deno`);
  await Deno.copyFile("/usr/bin/tini-static", `${ctx}/tini`);
  for (const f of ["deno", "tini", "docker-entrypoint.sh"]) await Deno.chmod(`${ctx}/${f}`, 0o755);
  const standIn = `${ID}-stand-in:${version}`;
  await mustDocker([
    "build",
    "--network",
    "host",
    "--build-arg",
    `ROOTFS=${rootImage}`,
    "--build-arg",
    `DENO_VERSION=${version}`,
    "-t",
    standIn,
    ctx,
  ]);
  removeImageLater(standIn, keep);

  // A host that reaches the npm registry only through a TLS-inspecting proxy trusts that proxy's
  // CA through its environment; the container must trust the same bundle, or `deno install` fails.
  const bundle = Deno.env.get("DENO_CERT") ?? Deno.env.get("SSL_CERT_FILE");
  if (bundle && await fileExists(bundle)) {
    const caCtx = `${work}/ca`;
    await Deno.mkdir(caCtx);
    await Deno.copyFile(bundle, `${caCtx}/host-ca.pem`);
    await Deno.writeTextFile(
      `${caCtx}/Dockerfile`,
      `FROM ${standIn}\nCOPY host-ca.pem /etc/ssl/host-ca.pem\nENV DENO_CERT=/etc/ssl/host-ca.pem\n`,
    );
    await mustDocker(["build", "--network", "host", "-t", base, caCtx]);
    note(`the stand-in trusts this host's CA bundle (${bundle}) through DENO_CERT`);
  } else {
    await mustDocker(["tag", standIn, base]);
  }
  removeImageLater(base, keep);
}

async function buildAll(suite: string, work: string, keep: boolean): Promise<Images> {
  const clone = `${work}/clone`;
  const head = (await must(["git", "-C", ROOT, "rev-parse", "HEAD"])).stdout.trim();
  await must(["git", "clone", "--quiet", "--no-local", ROOT, clone]);
  await must(["git", "-C", clone, "checkout", "--quiet", "--detach", head]);
  const dirty = (await must(["git", "-C", ROOT, "status", "--porcelain"])).stdout.trim();
  note(
    `clean clone of ${head.slice(0, 12)}${dirty ? " (uncommitted changes are not in it)" : ""}`,
  );
  SRC = clone;
  const dockerfile = await Deno.readTextFile(`${SRC}/deploy/Dockerfile`);
  const version = dockerfile.match(/^ARG DENO_VERSION=(\S+)$/m)?.[1];
  expect(version, "deploy/Dockerfile has no ARG DENO_VERSION=");
  const base = `denoland/deno:debian-${version}`;
  const denoBinary = await denoFromNpm(version, work);

  if (await imageExists(base)) {
    note(`${base} is already there; testing on it (it is left as it was)`);
  } else {
    await buildStandIn(base, version, suite, denoBinary, work, keep);
  }

  const image = `${ID}-backfill:${head.slice(0, 12)}`;
  let build: Out | undefined;
  const built = await check("image.build", async () => {
    build = await docker(
      ["build", "--network", "host", "-f", "deploy/Dockerfile", "-t", image, clone],
      900_000,
    );
    await Deno.writeTextFile(`${work}/logs/build.log`, build.stdout + build.stderr);
    removeImageLater(image, keep);
    expect(build.code === 0, `docker build exited ${build.code}: ${lastLines(build.stderr, 6)}`);
    const size = (await mustDocker(["image", "inspect", "-f", "{{.Size}}", image])).stdout;
    return `${build.seconds.toFixed(0)} s from a cold cache, ${
      mib(Number(size))
    } MiB, FROM ${base}`;
  });
  if (!built) throw new Error("the image did not build; nothing else can run");
  return { version, base, image, denoBinary, clone };
}

/** How many runs a server's log says have finished. */
function finishedRuns(log: string): number {
  return (log.match(/"msg":"backfill finished"/g) ?? []).length;
}

function lastLines(text: string, n: number): string {
  return text.trim().split("\n").slice(-n).join(" | ");
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(0);
}

// --- manifests → docker run ---------------------------------------------------------------------

/** What a pod or unit becomes as a container here. */
interface Spec {
  name: string;
  args: string[];
  env: Record<string, string>;
  user?: string;
  groups?: number[];
  readOnly?: boolean;
  noNewPrivileges?: boolean;
  dropCaps?: boolean;
  memory?: number;
  grace: number;
  mounts: { host: string; path: string; ro?: boolean }[];
  workdir?: string;
  network?: string;
}

const containers: string[] = [];

function runArgs(spec: Spec, image: string, detach: boolean): string[] {
  const a = ["run", "--name", spec.name, "--network", spec.network ?? "host"];
  if (detach) a.push("-d");
  a.push("--stop-timeout", String(spec.grace));
  if (spec.user) a.push("--user", spec.user);
  for (const g of spec.groups ?? []) a.push("--group-add", String(g));
  if (spec.readOnly) a.push("--read-only");
  if (spec.noNewPrivileges) a.push("--security-opt", "no-new-privileges");
  if (spec.dropCaps) a.push("--cap-drop", "ALL");
  if (spec.memory) a.push("--memory", String(spec.memory), "--memory-swap", String(spec.memory));
  if (spec.workdir) a.push("--workdir", spec.workdir);
  for (const m of spec.mounts) a.push("-v", `${m.host}:${m.path}${m.ro ? ":ro" : ""}`);
  for (const [k, v] of Object.entries(spec.env)) a.push("-e", `${k}=${v}`);
  return [...a, image, ...spec.args];
}

function track(name: string) {
  containers.push(name);
  if (containers.length === 1) {
    onCleanup("remove containers", async () => {
      for (const c of containers) await docker(["rm", "-f", "-v", c]);
    });
  }
}

/** Starts a container in the background. */
async function start(spec: Spec, image: string): Promise<void> {
  track(spec.name);
  await mustDocker(runArgs(spec, image, true));
}

/** Runs a container to its end; its output and exit code. */
async function runOnce(spec: Spec, image: string, timeoutMs = 600_000): Promise<Out> {
  track(spec.name);
  try {
    return await docker(runArgs(spec, image, false), timeoutMs);
  } finally {
    await docker(["rm", "-f", spec.name]);
  }
}

/** `docker stop -t grace`: seconds taken, exit code, OOM flag, whole log. */
async function stop(name: string, grace: number) {
  const t0 = performance.now();
  await mustDocker(["stop", "-t", String(grace), name], (grace + 30) * 1000);
  const seconds = (performance.now() - t0) / 1000;
  const state = await inspectState(name);
  return { seconds, ...state, logs: await logs(name) };
}

async function inspectState(name: string) {
  const st = JSON.parse(
    (await mustDocker(["inspect", "-f", "{{json .State}}", name])).stdout,
  ) as Obj;
  return {
    running: st.Running as boolean,
    exitCode: st.ExitCode as number,
    oomKilled: st.OOMKilled as boolean,
    pid: st.Pid as number,
  };
}

async function logs(name: string): Promise<string> {
  const res = await docker(["logs", name]);
  return res.stdout + res.stderr;
}

/** Host pid of the deno process in a container: the first deno among PID 1's descendants. */
async function denoPid(name: string): Promise<number> {
  const { pid } = await inspectState(name);
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    const argv0 = (await Deno.readTextFile(`/proc/${p}/cmdline`)).split("\0")[0];
    if (argv0.endsWith("deno")) return p;
    const kids = await Deno.readTextFile(`/proc/${p}/task/${p}/children`).catch(() => "");
    queue.push(...kids.trim().split(/\s+/).filter(Boolean).map(Number));
  }
  throw new Error(`no deno process in container ${name}`);
}

/** Kubernetes quantities as bytes ("2Gi", "512Mi", "1G"). */
function quantity(q: string): number {
  const m = /^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  expect(m, `cannot read quantity ${q}`);
  const unit: Record<string, number> = {
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  return Math.round(Number(m[1]) * (m[2] ? unit[m[2]] : 1));
}

function podSpecOf(doc: Obj): Obj {
  if (doc.kind === "CronJob") return doc.spec.jobTemplate.spec.template.spec;
  return doc.spec.template.spec;
}

async function readYaml(rel: string): Promise<Obj> {
  return parseYaml(await Deno.readTextFile(`${SRC}/${rel}`)) as Obj;
}

interface PodInputs {
  configMaps: Map<string, Obj>;
  secrets: Record<string, string>;
  /** Host directory for each PersistentVolumeClaim name. */
  claims: Record<string, string>;
  /** Replaces or adds variables (only what this machine forces; printed once per workload). */
  overrides: Record<string, string>;
  work: string;
}

let emptyDirs = 0;

/** A fresh emptyDir: world-writable, as the kubelet makes it. */
async function emptyDir(work: string): Promise<string> {
  const dir = `${work}/empty-${++emptyDirs}`;
  await Deno.mkdir(dir);
  await Deno.chmod(dir, 0o1777);
  return dir;
}

/** A fresh PersistentVolume as fsGroup leaves it: group-owned by `gid`, setgid, group-writable. */
async function claimDir(work: string, label: string, gid: number): Promise<string> {
  const dir = `${work}/pvc-${label}`;
  await Deno.mkdir(dir);
  await Deno.chown(dir, 0, gid);
  await Deno.chmod(dir, 0o2775);
  return dir;
}

/** The container a manifest's pod template describes, as `docker run` settings. */
async function podSpec(doc: Obj, name: string, p: PodInputs): Promise<Spec> {
  const pod = podSpecOf(doc);
  expect(pod.containers.length === 1, `${doc.metadata.name}: one container expected`);
  const c = pod.containers[0];
  expect(!c.command, `${doc.metadata.name}: command: is not modelled (args: only)`);
  const env: Record<string, string> = {};
  for (const src of c.envFrom ?? []) {
    const cm = p.configMaps.get(src.configMapRef?.name);
    expect(cm, `${doc.metadata.name}: unknown envFrom ${JSON.stringify(src)}`);
    for (const [k, v] of Object.entries(cm.data ?? {})) env[k] = String(v);
  }
  for (const e of c.env ?? []) {
    if (e.valueFrom?.secretKeyRef) {
      const ref = e.valueFrom.secretKeyRef;
      if (ref.key in p.secrets) env[e.name] = p.secrets[ref.key];
      else expect(ref.optional, `${doc.metadata.name}: secret key ${ref.key} missing`);
    } else {
      env[e.name] = String(e.value ?? "");
    }
  }
  Object.assign(env, p.overrides);
  const sc = { ...pod.securityContext, ...c.securityContext };
  const mounts: Spec["mounts"] = [];
  for (const m of c.volumeMounts ?? []) {
    const v = (pod.volumes ?? []).find((x: Obj) => x.name === m.name);
    expect(v, `${doc.metadata.name}: volume ${m.name} not declared`);
    let host: string;
    if (v.persistentVolumeClaim) {
      host = p.claims[v.persistentVolumeClaim.claimName];
      expect(host, `no volume for claim ${v.persistentVolumeClaim.claimName}`);
    } else if (v.emptyDir) {
      host = await emptyDir(p.work);
    } else {
      throw new Error(`${doc.metadata.name}: volume ${m.name} is neither a PVC nor an emptyDir`);
    }
    mounts.push({ host, path: m.mountPath, ro: m.readOnly });
  }
  const limit = c.resources?.limits?.memory;
  return {
    name,
    args: c.args ?? [],
    env,
    user: sc.runAsUser !== undefined
      ? `${sc.runAsUser}:${sc.runAsGroup ?? sc.runAsUser}`
      : undefined,
    groups: sc.fsGroup !== undefined ? [sc.fsGroup] : [],
    readOnly: sc.readOnlyRootFilesystem === true,
    noNewPrivileges: sc.allowPrivilegeEscalation === false,
    dropCaps: (sc.capabilities?.drop ?? []).includes("ALL"),
    memory: limit ? quantity(limit) : undefined,
    grace: pod.terminationGracePeriodSeconds ?? 30,
    mounts,
  };
}

/** The `[Service]` settings of a unit file, in order (repeated keys keep every value). */
function parseUnit(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";") || line.startsWith("[")) continue;
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const k = line.slice(0, eq).trim();
    out.set(k, [...(out.get(k) ?? []), line.slice(eq + 1).trim()]);
  }
  return out;
}

/** ExecStart= as systemd splits it: `$VAR` becomes its words, `${VAR}` one word. */
function execArgv(line: string, env: Record<string, string>): string[] {
  const words = line.replace(/^[-@:+!]+/, "").match(/"[^"]*"|\S+/g) ?? [];
  const argv: string[] = [];
  for (const w of words) {
    const bare = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(w);
    if (bare) {
      argv.push(...(env[bare[1]] ?? "").split(/\s+/).filter(Boolean));
      continue;
    }
    const unq = w.startsWith('"') ? w.slice(1, -1) : w;
    argv.push(unq.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, k) => env[k] ?? ""));
  }
  return argv;
}

interface UnitHost {
  clone: string;
  deno: string;
  state: string;
  cache: string;
  work: string;
}

/** A unit's ExecStart as a container: the unit's environment, user, directories and sandbox. */
async function unitSpec(
  file: string,
  name: string,
  envFile: Record<string, string>,
  host: UnitHost,
): Promise<{ spec: Spec; argv: string[] }> {
  const u = parseUnit(await Deno.readTextFile(`${SRC}/deploy/systemd/${file}`));
  const one = (k: string) => u.get(k)?.at(-1);
  const env: Record<string, string> = {};
  for (const e of u.get("Environment") ?? []) {
    const eq = e.indexOf("=");
    env[e.slice(0, eq)] = e.slice(eq + 1);
  }
  Object.assign(env, envFile); // EnvironmentFile= wins over Environment=, whatever the order
  const execs = u.get("ExecStart") ?? [];
  expect(execs.length === 1, `${file}: one ExecStart expected`);
  const argv = execArgv(execs[0], env);
  expect(argv[0] === "/usr/local/bin/deno", `${file}: ExecStart runs ${argv[0]}`);
  const mounts: Spec["mounts"] = [
    { host: host.deno, path: "/usr/local/bin/deno", ro: true },
    { host: host.clone, path: one("WorkingDirectory")!, ro: true },
  ];
  if (one("StateDirectory")) {
    mounts.push({ host: host.state, path: `/var/lib/${one("StateDirectory")}` });
  }
  if (one("CacheDirectory")) {
    mounts.push({ host: host.cache, path: `/var/cache/${one("CacheDirectory")}` });
  }
  if (one("PrivateTmp") === "yes") mounts.push({ host: await emptyDir(host.work), path: "/tmp" });
  const umask = one("UMask");
  return {
    argv,
    spec: {
      name,
      args: umask ? ["sh", "-c", `umask ${umask} && exec "$@"`, file, ...argv] : argv,
      env,
      user: one("DynamicUser") === "yes" ? `${UNIT_UID}:${UNIT_UID}` : undefined,
      readOnly: one("ProtectSystem") === "strict",
      noNewPrivileges: one("NoNewPrivileges") === "yes",
      dropCaps: one("CapabilityBoundingSet") === "",
      grace: Number((one("TimeoutStopSec") ?? "90").replace(/s$/, "")),
      workdir: one("WorkingDirectory"),
      mounts,
    },
  };
}

// --- sim relays and Postgres -------------------------------------------------------------------

interface Sim {
  url: string;
  entries: number;
  collections: number;
  largest: Map<string, number>;
}

/** `deno task sim-relay` on the host, stopped at the end. */
async function startSim(port: number, extra: string[], clone: string): Promise<Sim> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "sim-relay", "--port", String(port), ...extra],
    cwd: clone,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  onCleanup(`stop sim relay :${port}`, async () => {
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await child.status;
    clearTimeout(t);
  });
  const lines: string[] = [];
  (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of child.stdout) {
      buf += dec.decode(chunk, { stream: true });
      const parts = buf.split("\n");
      buf = parts.pop()!;
      lines.push(...parts);
    }
  })();
  const world = await waitFor(`the sim relay on :${port}`, 120_000, () => {
    return Promise.resolve(lines.find((l) => l.startsWith("largest:")) ? lines : undefined);
  });
  const w = world.find((l) => l.startsWith("world:"))!;
  const m = /(\d+) collections, (\d+) entries/.exec(w);
  expect(m, `cannot read the sim's world line: ${w}`);
  const largest = new Map<string, number>();
  for (const part of world.find((l) => l.startsWith("largest:"))!.slice(8).split(",")) {
    const [c, n] = part.trim().split(" ");
    largest.set(c, Number(n));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    collections: Number(m[1]),
    entries: Number(m[2]),
    largest,
  };
}

/** The sim's firehose (it emits nothing unless started with --stream-rate, so counts stay exact). */
function firehose(sim: Sim): string {
  return `${sim.url.replace(/^http/, "ws")}/xrpc/com.atproto.sync.subscribeRepos`;
}

/** Waits until a server's status says its live stream is connected. */
async function liveConnected(server: string, token: string): Promise<Obj> {
  return await waitFor(`${server}'s live stream to connect`, 60_000, async () => {
    const r = await httpGet(`${server}/admin/backfill-collections`, token);
    const live = JSON.parse(r.body).live;
    return live?.connected ? live : undefined;
  });
}

function dbUrl(name: string): string {
  const u = new URL(PG_URL);
  u.pathname = `/${name}`;
  return u.href;
}

async function psql(url: string, sql: string): Promise<string> {
  return (await must(["psql", url, "-X", "-q", "-At", "-c", sql])).stdout.trim();
}

async function freshDatabase(label: string): Promise<string> {
  const name = `${ID}_${label}`;
  await psql(PG_URL, `CREATE DATABASE ${name}`);
  onCleanup(
    `drop database ${name}`,
    () => psql(PG_URL, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  );
  return dbUrl(name);
}

/** Collections, completed ones and the sum of imported_count in a progress database. */
async function progressTotals(url: string) {
  const row = await psql(
    url,
    "SELECT count(*), count(completed_at), coalesce(sum(imported_count), 0) FROM backfill_progress",
  );
  const [collections, completed, imported] = row.split("|").map(Number);
  return { collections, completed, imported };
}

/** A TCP proxy to Postgres that holds every connection until `open()`: a startup waits there. */
function postgresGate(port: number) {
  const target = new URL(PG_URL);
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const conns: Deno.Conn[] = [];
  let release!: () => void;
  const opened = new Promise<void>((r) => (release = r));
  let held = 0;
  (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      held++;
      (async () => {
        await opened;
        const up = await Deno.connect({
          hostname: target.hostname,
          port: Number(target.port || 5432),
        });
        conns.push(up);
        await Promise.all([conn.readable.pipeTo(up.writable), up.readable.pipeTo(conn.writable)]);
      })().catch(() => {});
    }
  })().catch(() => {});
  const close = () => {
    try {
      listener.close();
    } catch { /* already closed */ }
    for (const c of conns) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  };
  onCleanup(`close the Postgres gate :${port}`, () => Promise.resolve(close()));
  return {
    held: () => held,
    open: () => release(),
    url: (db: string) => {
      const u = new URL(db);
      u.port = String(port);
      return u.href;
    },
  };
}

// --- XRPC read-back -----------------------------------------------------------------------------

/** An order-free digest of a DID set: count and two 32-bit sums of per-DID hashes. */
interface Digest {
  n: number;
  a: number;
  b: number;
}

function addDid(d: Digest, did: string) {
  let h1 = 0x811c9dc5, h2 = 0x9747b28c;
  for (let i = 0; i < did.length; i++) {
    const c = did.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 13;
  }
  d.n++;
  d.a = (d.a + (h1 >>> 0)) >>> 0;
  d.b = (d.b + (h2 >>> 0)) >>> 0;
}

/** Pages a listReposByCollection endpoint to the end. */
async function digestOf(base: string, collection: string, limit: number): Promise<Digest> {
  const d: Digest = { n: 0, a: 0, b: 0 };
  let cursor = "";
  for (let page = 0;; page++) {
    expect(page < 1_000_000, `${base}: ${collection} never ends`);
    const q = new URLSearchParams({ collection, limit: String(limit) });
    if (cursor) q.set("cursor", cursor);
    const res = await httpGet(`${base}/xrpc/com.atproto.sync.listReposByCollection?${q}`);
    expect(res.status === 200, `${base}: ${collection}: ${res.status} ${res.body.slice(0, 200)}`);
    const body = JSON.parse(res.body) as { repos: { did: string }[]; cursor?: string };
    for (const r of body.repos) addDid(d, r.did);
    if (!body.cursor) return d;
    cursor = body.cursor;
  }
}

// --- memory -------------------------------------------------------------------------------------

interface MemPeak {
  cgroup: number;
  anon: number;
  file: number;
  hwm: number;
  failcnt: number;
}

/** Samples a container's memory cgroup and its deno process every 500 ms until stopped. */
function sampleMemory(name: string, peak: MemPeak): { stop: () => Promise<void> } {
  let done = false;
  const loop = (async () => {
    const { pid } = await inspectState(name);
    const cg = (await Deno.readTextFile(`/proc/${pid}/cgroup`)).split("\n");
    const v1 = cg.find((l) => l.split(":")[1]?.split(",").includes("memory"));
    const dir = v1
      ? `/sys/fs/cgroup/memory${v1.split(":")[2]}`
      : `/sys/fs/cgroup${cg.find((l) => l.startsWith("0::"))!.slice(3)}`;
    let deno = 0;
    const num = async (f: string) => Number((await Deno.readTextFile(`${dir}/${f}`)).trim());
    while (!done) {
      try {
        const stat = await Deno.readTextFile(`${dir}/memory.stat`);
        const field = (k: string) => Number(new RegExp(`^${k} (\\d+)$`, "m").exec(stat)?.[1] ?? 0);
        peak.cgroup = Math.max(
          peak.cgroup,
          v1 ? await num("memory.max_usage_in_bytes") : await num("memory.peak"),
        );
        peak.anon = Math.max(peak.anon, v1 ? field("total_rss") : field("anon"));
        peak.file = Math.max(peak.file, v1 ? field("total_cache") : field("file"));
        if (v1) peak.failcnt = Math.max(peak.failcnt, await num("memory.failcnt"));
        if (!deno) deno = await denoPid(name);
        const st = await Deno.readTextFile(`/proc/${deno}/status`);
        const hwm = Number(/^VmHWM:\s+(\d+) kB/m.exec(st)?.[1] ?? 0) * 1024;
        peak.hwm = Math.max(peak.hwm, hwm);
      } catch {
        // The container stopped between two samples.
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return {
    stop: async () => {
      done = true;
      await loop.catch(() => {});
    },
  };
}

// --- the scenarios ------------------------------------------------------------------------------

interface Ctx {
  work: string;
  img: Images;
  configMaps: Map<string, Obj>;
  scale: number;
  /** The small world (default sim-relay flags), shared by the Job and systemd scenarios. */
  sim: Sim;
}

async function standInChecks(ctx: Ctx) {
  const { base, version } = ctx.img;
  await check("base.shape", async () => {
    const r = await mustDocker([
      "run",
      "--rm",
      "--network",
      "host",
      base,
      "sh",
      "-c",
      '. /etc/os-release; echo "$ID $VERSION_CODENAME"; command -v deno; deno --version | head -n1; ' +
      'id -u deno; id -g deno; echo "$DENO_DIR"; stat -c %u:%g "$DENO_DIR"',
    ]);
    const [os, path, ver, uid, gid, dir, owner] = r.stdout.trim().split("\n");
    expect(os.startsWith("debian "), `not Debian: ${os}`);
    expect(ver.startsWith(`deno ${version} `), `deno is ${ver}`);
    expect(uid === "1993" && gid === "1993", `deno user is ${uid}:${gid}`);
    expect(dir.replace(/\/$/, "") === "/deno-dir", `DENO_DIR=${dir}`);
    expect(owner === "1993:1993", `DENO_DIR owned by ${owner}`);
    return `${os}, ${path}: ${ver.split(" (")[0]}, deno 1993:1993, DENO_DIR=${dir} owned by deno`;
  });
  await check("base.entry", async () => {
    const ep = (await mustDocker(["image", "inspect", "-f", "{{json .Config.Entrypoint}}", base]))
      .stdout.trim();
    expect(ep === '["/tini","--","docker-entrypoint.sh"]', `ENTRYPOINT ${ep}`);
    const pid1 = await mustDocker([
      "run",
      "--rm",
      base,
      "sh",
      "-c",
      "tr '\\0' ' ' < /proc/1/cmdline",
    ]);
    expect(pid1.stdout.startsWith("/tini -- "), `PID 1 is ${pid1.stdout}`);
    const flag = await mustDocker(["run", "--rm", base, "--version"]);
    expect(flag.stdout.startsWith(`deno ${version}`), `--version gave ${flag.stdout}`);
    const sub = await mustDocker(["run", "--rm", base, "eval", "console.log(6 * 7)"]);
    expect(sub.stdout.trim() === "42", `eval gave ${sub.stdout}`);
    const other = await mustDocker(["run", "--rm", base, "echo", "plain"]);
    expect(other.stdout.trim() === "plain", `echo gave ${other.stdout}`);
    const dflt = await mustDocker(["run", "--rm", base]);
    expect(/Welcome to Deno/.test(dflt.stdout), `default CMD gave ${dflt.stdout}`);
    return "PID 1 /tini; `--version`, `eval` go to deno; `echo` runs as given; default CMD greets";
  });
}

async function imageChecks(ctx: Ctx) {
  const image = ctx.img.image;
  await check("image.context", async () => {
    const r = await mustDocker(["run", "--rm", image, "ls", "-A", "/app"]);
    const names = r.stdout.trim().split("\n");
    const leaked = names.filter((n) =>
      [".env", ".git", ".ci", "tests", "deploy", "data", "node_modules", ".gitignore"].includes(n)
    );
    expect(leaked.length === 0, `in the image: ${leaked.join(", ")}`);
    expect(names.includes("main.ts") && names.includes("deno.lock"), `/app has ${names}`);
    return `/app holds ${names.join(", ")}`;
  });
  // The classic builder reads only a root .dockerignore, so the Dockerfile itself must not copy
  // what an operator's checkout holds besides the code: a .env with secrets, data/ with an index.
  await check("image.classic", async () => {
    const ctxDir = `${ctx.work}/classic-context`;
    await must(["cp", "-a", ctx.img.clone, ctxDir]);
    await Deno.mkdir(`${ctxDir}/data/index`, { recursive: true });
    await Deno.writeTextFile(`${ctxDir}/data/index/CURRENT`, "an operator's index\n");
    await Deno.writeTextFile(`${ctxDir}/.env`, "RELAY_ADMIN_PASSWORD=a-secret\n");
    const tag = `${ID}-classic:latest`;
    const build = await run(
      [DOCKER, "build", "--network", "host", "-f", "deploy/Dockerfile", "-t", tag, ctxDir],
      { env: { ...dockerEnv, DOCKER_BUILDKIT: "0" }, timeoutMs: 900_000 },
    );
    await Deno.writeTextFile(`${ctx.work}/logs/build-classic.log`, build.stdout + build.stderr);
    removeImageLater(tag, false);
    expect(build.code === 0, `classic build exited ${build.code}: ${lastLines(build.stderr, 4)}`);
    const r = await mustDocker(["run", "--rm", tag, "ls", "-A", "/app"]);
    const names = r.stdout.trim().split("\n");
    const leaked = names.filter((n) => [".env", ".git", "data", "tests", "deploy"].includes(n));
    expect(leaked.length === 0, `the classic builder copied ${leaked.join(", ")} into /app`);
    return `built in ${build.seconds.toFixed(0)} s; /app holds ${names.join(", ")}`;
  });
  await check("image.v8flags", async () => {
    const r = await mustDocker([
      "run",
      "--rm",
      image,
      "deno",
      "eval",
      "import v8 from 'node:v8'; console.log(v8.getHeapStatistics().heap_size_limit)",
    ]);
    const limit = Number(r.stdout.trim());
    // 256 MB old space plus the young generation; V8's own default here would be far larger.
    expect(limit > 200 * 2 ** 20 && limit < 400 * 2 ** 20, `heap limit ${mib(limit)} MiB`);
    return `heap limit ${mib(limit)} MiB (DENO_V8_FLAGS)`;
  });
}

/** The Deployment on the large world: probes, admin start, a stop and a resume, exact counts. */
async function deploymentScenario(ctx: Ctx) {
  const deployment = await readYaml("deploy/k8s/deployment.yaml");
  const cronJob = await readYaml("deploy/k8s/cronjob.yaml");
  const batchCronJob = await readYaml("deploy/k8s-batch/cronjob.yaml");
  const sim = await startSim(PORT.simBig, ["--scale", String(ctx.scale)], ctx.img.clone);
  note(`large world: ${sim.entries.toLocaleString("en")} pairs in ${sim.collections} collections`);
  const token = crypto.randomUUID();
  const db = await freshDatabase("deploy");
  const pod = podSpecOf(deployment);
  const c = pod.containers[0];
  const fsGroup = pod.securityContext?.fsGroup ?? 1993;
  const claims = { "backfill-index": await claimDir(ctx.work, "deploy", fsGroup) };
  const secrets = { RELAY_ADMIN_PASSWORD: token, DATABASE_URL: db };
  const overrides = {
    PORT: String(PORT.server),
    HOST: "127.0.0.1",
    BACKFILL_SOURCE: sim.url,
    LEXICON_LIST_URL: `${sim.url}/llms.txt`,
    // Lifted so that ingest, not the politeness cap, sets the pace: the hardest case for memory.
    BACKFILL_MAX_RPS: "1000",
    LIVE_STREAM_URL: firehose(sim),
  };
  note(`Deployment env overrides here: ${JSON.stringify(overrides)}`);
  const inputs = { configMaps: ctx.configMaps, secrets, claims, overrides, work: ctx.work };
  const server = `http://127.0.0.1:${PORT.server}`;
  const probe = c.startupProbe;
  const budget = (probe?.periodSeconds ?? 10) * (probe?.failureThreshold ?? 3);
  const peak: MemPeak = { cgroup: 0, anon: 0, file: 0, hwm: 0, failcnt: 0 };
  const limit = quantity(c.resources.limits.memory);

  const s1 = await podSpec(deployment, `${ID}-deploy-1`, inputs);
  const t0 = performance.now();
  await start(s1, ctx.img.image);
  const mem1 = sampleMemory(s1.name, peak);
  const up = async (name: string) => {
    const health = await waitFor(`/healthz of ${name}`, budget * 1000, async () => {
      const st = await inspectState(name);
      fatalUnless(st.running, `${name} exited ${st.exitCode}: ${lastLines(await logs(name), 3)}`);
      return (await httpGet(`${server}/healthz`)).status === 200 ? performance.now() : undefined;
    });
    const ready = await waitFor(`/readyz of ${name}`, budget * 1000, async () => {
      return (await httpGet(`${server}/readyz`)).status === 200 ? performance.now() : undefined;
    });
    return { health: (health - t0) / 1000, ready: (ready - t0) / 1000 };
  };
  const status = async () => {
    const r = await httpGet(`${server}/admin/backfill-collections`, token);
    expect(r.status === 200, `status answered ${r.status}`);
    return JSON.parse(r.body) as Obj;
  };

  let ok = await check("deploy.probes", async () => {
    const t = await up(s1.name);
    return `healthz after ${t.health.toFixed(1)} s, readyz after ${t.ready.toFixed(1)} s ` +
      `(budget ${budget} s = periodSeconds × failureThreshold)`;
  });
  if (!ok) return;

  await check("image.user", async () => {
    const r = await mustDocker(["run", "--rm", ctx.img.image, "id", "-u"]);
    expect(r.stdout.trim() === "1993", `image user ${r.stdout.trim()}`);
    const st = await Deno.readTextFile(`/proc/${await denoPid(s1.name)}/status`);
    const uid = /^Uid:\s+(.*)$/m.exec(st)?.[1].split(/\s+/);
    const gid = /^Gid:\s+(.*)$/m.exec(st)?.[1].split(/\s+/);
    expect(uid?.every((u) => u === "1993"), `server uids ${uid}`);
    expect(gid?.every((g) => g === "1993"), `server gids ${gid}`);
    return "`id -u` = 1993; the server's real/effective/saved uid and gid are 1993";
  });
  await check("image.readonly", async () => {
    expect(s1.readOnly, "the Deployment does not set readOnlyRootFilesystem");
    const r = await docker([
      "exec",
      s1.name,
      "sh",
      "-c",
      "touch /app/x 2>&1; touch /deno-dir/x 2>&1",
    ]);
    expect(
      (r.stdout.match(/Read-only file system/g) ?? []).length === 2,
      `root writable: ${r.stdout}`,
    );
    await mustDocker([
      "exec",
      s1.name,
      "sh",
      "-c",
      "touch /data/.w /tmp/.w && rm /data/.w /tmp/.w",
    ]);
    return "/app and /deno-dir refuse writes; /data (PVC) and /tmp (emptyDir) take them";
  });
  await check("image.jemalloc", async () => {
    const pid = await denoPid(s1.name);
    const maps = await Deno.readTextFile(`/proc/${pid}/maps`);
    const lib = maps.split("\n").find((l) => l.includes("libjemalloc"));
    expect(lib, "no libjemalloc in the deno process's maps");
    return `mapped in pid ${pid}: ${lib.trim().split(/\s+/).pop()}`;
  });
  await check("image.healthcheck", async () => {
    const hc = JSON.parse(
      (await mustDocker([
        "image",
        "inspect",
        "-f",
        "{{json .Config.Healthcheck.Test}}",
        ctx.img.image,
      ]))
        .stdout,
    ) as string[];
    expect(hc?.[0] === "CMD", `HEALTHCHECK ${JSON.stringify(hc)}`);
    const r = await docker(["exec", s1.name, ...hc.slice(1)], 30_000);
    expect(r.code === 0, `exit ${r.code}: ${lastLines(r.stderr, 3)}`);
    // And it must fail when the server is not there (another port).
    const bad = await docker(["exec", "-e", "PORT=1", s1.name, ...hc.slice(1)], 30_000);
    expect(bad.code !== 0, "HEALTHCHECK passes with nothing listening");
    return `\`${hc.slice(1, 3).join(" ")} …\` exits 0 (and ${bad.code} against a closed port)`;
  });

  await check("deploy.live", async () => {
    const live = await liveConnected(server, token);
    expect(live.url.startsWith("ws://127.0.0.1:"), `live stream at ${live.url}`);
    return `${live.kind} ${live.url} connected (status JSON \`live\`)`;
  });

  ok = await check("deploy.start", async () => {
    const r = await fetch(`${server}/admin/backfill-collections`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(60_000),
    });
    const body = await r.json();
    expect(r.status === 200 && body.status === "started", `${r.status} ${JSON.stringify(body)}`);
    expect(
      body.collections === sim.collections,
      `${body.collections} collections, world has ${sim.collections}`,
    );
    return `POST /admin/backfill-collections: ${body.collections} collections, ${body.queued} queued`;
  });
  if (!ok) return;

  const cronInputs = {
    ...inputs,
    overrides: { RELAY_URL: server },
  };
  await check("cron.busy", async () => {
    const st = await status();
    expect(st.running, "the backfill already finished; cannot test a 409");
    const spec = await podSpec(cronJob, `${ID}-cron-busy`, cronInputs);
    const r = await runOnce(spec, ctx.img.image, 120_000);
    expect(r.code === 1, `exit ${r.code}: ${lastLines(r.stdout + r.stderr, 3)}`);
    return `exit 1: ${lastLines(r.stderr, 1)}`;
  });

  let stoppedAt = 0;
  ok = await check("signal.stop", async () => {
    const third = Math.floor(sim.entries * 0.3);
    await waitFor("30% of the pairs", ingestDeadlineMs(third, 600_000), async () => {
      const st = await status();
      fatalUnless(st.running, `the run ended before 30% (${st.total_imported} pairs)`);
      return st.total_imported >= third ? true : undefined;
    });
    const s = await stop(s1.name, s1.grace);
    await mem1.stop();
    expect(!s.oomKilled, "OOM-killed");
    expect(s.exitCode === 0, `exit ${s.exitCode}`);
    expect(s.seconds < s1.grace, `took ${s.seconds.toFixed(1)} s, grace ${s1.grace} s`);
    expect(/"shutting down"/.test(s.logs) && /"stopped"/.test(s.logs), "no shutdown in the log");
    stoppedAt = await progressTotals(db).then((t) => t.imported);
    return `exit 0 in ${s.seconds.toFixed(1)} s (grace ${s1.grace} s) with ` +
      `${stoppedAt.toLocaleString("en")} pairs saved`;
  });
  if (!ok) {
    await mem1.stop();
    return;
  }

  const s2 = await podSpec(deployment, `${ID}-deploy-2`, inputs);
  const t1 = performance.now();
  await start(s2, ctx.img.image);
  const mem2 = sampleMemory(s2.name, peak);
  let seconds = 0;
  ok = await check("signal.resume", async () => {
    await up(s2.name);
    const rest = sim.entries - stoppedAt;
    const final = await waitFor(
      "the resumed run to finish",
      ingestDeadlineMs(rest, 900_000),
      async () => {
        const st = await status();
        return !st.running && st.completed + st.failed === st.total ? st : undefined;
      },
    );
    seconds = (performance.now() - t1) / 1000;
    const log = await logs(s2.name);
    expect(/"resuming interrupted backfill"/.test(log), "the new pod did not resume by itself");
    return `resumed from ${stoppedAt.toLocaleString("en")} pairs and finished ` +
      `${final.completed}/${final.total} collections in ${seconds.toFixed(0)} s`;
  });
  await mem2.stop();
  if (!ok) return;

  await check("deploy.counts", async () => {
    const st = await status();
    expect(st.failed === 0, `${st.failed} failed`);
    expect(
      st.total === sim.collections && st.completed === sim.collections,
      `${st.completed}/${st.total}`,
    );
    expect(st.total_imported === sim.entries, `${st.total_imported} pairs, sim has ${sim.entries}`);
    const pg = await progressTotals(db);
    expect(
      pg.imported === sim.entries && pg.completed === sim.collections,
      `Postgres: ${JSON.stringify(pg)}`,
    );
    return `${st.completed}/${sim.collections} collections, ${
      st.total_imported.toLocaleString("en")
    } ` +
      `pairs = the sim's (status JSON and Postgres)`;
  });
  await check("deploy.xrpc", async () => {
    const st = await status();
    const t = performance.now();
    let total = 0;
    for (const col of st.collections as Obj[]) {
      const ours = await digestOf(server, col.collection, 2000);
      const theirs = await digestOf(sim.url, col.collection, 10000);
      expect(
        ours.n === theirs.n && ours.a === theirs.a && ours.b === theirs.b,
        `${col.collection}: ${ours.n} DIDs read back, sim has ${theirs.n}, sets differ`,
      );
      expect(
        col.imported === theirs.n,
        `${col.collection}: imported ${col.imported} ≠ ${theirs.n}`,
      );
      total += ours.n;
    }
    expect(total === sim.entries, `read back ${total} of ${sim.entries}`);
    return `${total.toLocaleString("en")} DIDs in ${st.collections.length} collections read back ` +
      `in ${((performance.now() - t) / 1000).toFixed(0)} s, equal to the sim's sets`;
  });

  await check("cron.trigger", async () => {
    const before = finishedRuns(await logs(s2.name));
    const spec = await podSpec(cronJob, `${ID}-cron`, cronInputs);
    const r = await runOnce(spec, ctx.img.image, 120_000);
    expect(r.code === 0, `exit ${r.code}: ${lastLines(r.stdout + r.stderr, 3)}`);
    expect(/started catch-up/.test(r.stdout), `said: ${r.stdout.trim()}`);
    const deadline = ingestDeadlineMs(sim.entries, 300_000);
    const done = await waitFor("the catch-up to finish", deadline, async () => {
      const st = await status();
      return st.running || finishedRuns(await logs(s2.name)) === before ? undefined : st;
    });
    expect(done.total_imported === sim.entries, `pairs now ${done.total_imported}`);
    return `exit 0, "${r.stdout.trim()}"; the server ran it (pairs still exact)`;
  });
  await check("cron.token", async () => {
    const spec = await podSpec(cronJob, `${ID}-cron-token`, {
      ...cronInputs,
      secrets: { RELAY_ADMIN_PASSWORD: "not-the-token" },
    });
    const r = await runOnce(spec, ctx.img.image, 120_000);
    expect(r.code === 1, `exit ${r.code}`);
    return `exit 1: ${lastLines(r.stderr, 1)}`;
  });
  await check("cron.down", async () => {
    const spec = await podSpec(cronJob, `${ID}-cron-down`, {
      ...cronInputs,
      overrides: { RELAY_URL: `http://127.0.0.1:${PORT.closed}` },
    });
    const r = await runOnce(spec, ctx.img.image, 120_000);
    expect(r.code === 1, `exit ${r.code}`);
    return `exit 1: ${lastLines(r.stderr, 1)}`;
  });

  await check("deploy.memory", async () => {
    for (const name of [s1.name, s2.name]) {
      expect(!(await inspectState(name)).oomKilled, `${name} was OOM-killed`);
    }
    expect(peak.cgroup > 0, "no memory samples");
    const figures = `limit ${mib(limit)} MiB, ${sim.entries.toLocaleString("en")} pairs: ` +
      `cgroup peak ${mib(peak.cgroup)} MiB (anonymous ${mib(peak.anon)} MiB, page cache ` +
      `${mib(peak.file)} MiB), deno VmHWM ${mib(peak.hwm)} MiB, limit hits ${peak.failcnt}`;
    // The page cache of an index larger than the limit fills the cgroup up to it, and the kernel
    // takes it back there (README, Performance); what it cannot take back is the anonymous memory.
    expect(peak.anon < limit / 2, `anonymous memory reached half the limit: ${figures}`);
    return figures;
  });

  await check("signal.idle", async () => {
    const s = await stop(s2.name, s2.grace);
    expect(s.exitCode === 0 && !s.oomKilled, `exit ${s.exitCode}`);
    expect(s.seconds < s2.grace, `took ${s.seconds.toFixed(1)} s`);
    return `exit 0 in ${s.seconds.toFixed(1)} s`;
  });

  // The server is between its signal handlers and its HTTP server: migrations wait at a gate in
  // front of Postgres. SIGTERM lands there; then the gate opens and startup could carry on.
  await check("signal.startup", async () => {
    const gate = postgresGate(PORT.gate);
    const s3 = await podSpec(deployment, `${ID}-deploy-3`, {
      ...inputs,
      secrets: { ...secrets, DATABASE_URL: gate.url(db) },
    });
    await start(s3, ctx.img.image);
    await waitFor("the starting server to reach Postgres", 120_000, async () => {
      const st = await inspectState(s3.name);
      fatalUnless(st.running, `exited ${st.exitCode}: ${lastLines(await logs(s3.name), 3)}`);
      return gate.held() > 0 ? true : undefined;
    });
    const t = performance.now();
    await mustDocker(["kill", "--signal", "TERM", s3.name]);
    gate.open();
    const waited = await docker(["wait", s3.name], (s3.grace + 5) * 1000).catch(() => undefined);
    const seconds = (performance.now() - t) / 1000;
    if (!waited) await docker(["kill", s3.name]); // what the kubelet does after the grace period
    const log = await logs(s3.name);
    expect(waited, `still running ${s3.grace} s after SIGTERM (killed, as the kubelet would)`);
    const code = Number(waited.stdout.trim());
    expect(code === 0, `exit ${code}: ${lastLines(log, 2)}`);
    // It listens from the start (for its probes); "ready" would mean startup went on after the signal.
    expect(!/"ready"/.test(log), "it finished starting after the signal");
    return `exit 0 in ${seconds.toFixed(1)} s, never ready`;
  });

  await check("batch.catchup", async () => {
    const spec = await podSpec(batchCronJob, `${ID}-batch`, {
      ...inputs,
      overrides: {
        BACKFILL_SOURCE: sim.url,
        LEXICON_LIST_URL: `${sim.url}/llms.txt`,
        LIVE_STREAM_URL: firehose(sim),
      },
    });
    const r = await runOnce(spec, ctx.img.image, 600_000);
    expect(r.code === 0, `exit ${r.code}: ${lastLines(r.stdout + r.stderr, 3)}`);
    expect(/\(catch-up\)/.test(r.stdout), `no catch-up in: ${lastLines(r.stdout, 2)}`);
    const pg = await progressTotals(db);
    expect(pg.imported === sim.entries, `pairs now ${pg.imported}`);
    return `exit 0 in ${r.seconds.toFixed(0)} s: ${lastLines(r.stdout, 1)}`;
  });
}

/** The Job and its exit codes, on a small world. */
async function jobScenario(ctx: Ctx) {
  const job = await readYaml("deploy/k8s/job.yaml");
  const sim = ctx.sim;
  const failing = await startSim(PORT.simFailing, ["--forbidden", FAILING], ctx.img.clone);
  const fsGroup = podSpecOf(job).securityContext?.fsGroup ?? 1993;
  const jobSpec = async (label: string, source: Sim, db: string, extra: string[] = []) => {
    const spec = await podSpec(job, `${ID}-job-${label}`, {
      configMaps: ctx.configMaps,
      secrets: { DATABASE_URL: db },
      claims: { "backfill-index": await claimDir(ctx.work, `job-${label}`, fsGroup) },
      overrides: {
        BACKFILL_SOURCE: source.url,
        LEXICON_LIST_URL: `${source.url}/llms.txt`,
        LIVE_STREAM_URL: firehose(source),
      },
      work: ctx.work,
    });
    spec.args = [...spec.args, ...extra];
    return spec;
  };

  await check("job.complete", async () => {
    const db = await freshDatabase("job");
    const r = await runOnce(await jobSpec("ok", sim, db), ctx.img.image);
    expect(r.code === 0, `exit ${r.code}: ${lastLines(r.stdout + r.stderr, 3)}`);
    const pg = await progressTotals(db);
    expect(
      pg.collections === sim.collections && pg.completed === sim.collections &&
        pg.imported === sim.entries,
      `Postgres ${JSON.stringify(pg)}, sim ${sim.collections} collections, ${sim.entries} pairs`,
    );
    return `exit 0 in ${r.seconds.toFixed(1)} s; ${pg.completed}/${sim.collections} complete, ` +
      `${pg.imported.toLocaleString("en")} pairs = the sim's`;
  });
  await check("job.failed", async () => {
    const db = await freshDatabase("jobfail");
    const r = await runOnce(await jobSpec("fail", failing, db), ctx.img.image);
    expect(r.code === 1, `exit ${r.code}: ${lastLines(r.stdout + r.stderr, 3)}`);
    const line = r.stdout.split("\n").find((l) => l.startsWith(`failed: ${FAILING}`));
    expect(line, `no "failed: ${FAILING}" line`);
    const pg = await progressTotals(db);
    expect(pg.completed === failing.collections - 1, `${pg.completed} completed`);
    return `exit 1, "${line.slice(0, 90)}…", the other ${pg.completed} complete`;
  });
  await check("job.badargs", async () => {
    const db = await freshDatabase("jobargs");
    const cases: [string, string[], Record<string, string>][] = [
      ["--collection not_an_nsid", ["--collection", "not_an_nsid"], {}],
      ["--no-such-flag", ["--no-such-flag"], {}],
      ["BACKFILL_PAGE_LIMIT=0", [], { BACKFILL_PAGE_LIMIT: "0" }],
    ];
    const seen: string[] = [];
    for (const [label, extra, env] of cases) {
      const spec = await jobSpec(`args${seen.length}`, sim, db, extra);
      Object.assign(spec.env, env);
      const r = await runOnce(spec, ctx.img.image, 120_000);
      const err = r.stderr.trim().split("\n");
      expect(r.code === 2, `${label}: exit ${r.code}: ${lastLines(r.stderr, 2)}`);
      expect(err.length === 1 && err[0].startsWith("error: "), `${label}: stderr ${r.stderr}`);
      seen.push(`${label} → 2`);
    }
    return seen.join("; ");
  });
}

/** The image's own CMD with no network at all, on the embedded Postgres. */
async function offlineScenario(ctx: Ctx) {
  const data = await claimDir(ctx.work, "offline", 1993);
  const spec: Spec = {
    name: `${ID}-offline`,
    args: [],
    env: {},
    readOnly: true,
    grace: 30,
    network: "none",
    mounts: [{ host: data, path: "/data" }, { host: await emptyDir(ctx.work), path: "/tmp" }],
  };
  const ok = await check("offline.start", async () => {
    const t0 = performance.now();
    await start(spec, ctx.img.image);
    // It listens at once (for its probes), and is ready once Postgres is up and migrated.
    await waitFor("the offline server to be ready", 180_000, async () => {
      const st = await inspectState(spec.name);
      fatalUnless(st.running, `exited ${st.exitCode}: ${lastLines(await logs(spec.name), 3)}`);
      return /"ready"/.test(await logs(spec.name)) ? true : undefined;
    });
    const seconds = (performance.now() - t0) / 1000;
    const log = await logs(spec.name);
    expect(/"using embedded Postgres"/.test(log), "not on the embedded Postgres");
    expect(/"migrations applied"/.test(log), "no migrations in the log");
    // Offline and --cached-only: the front's worker (not in main.ts's static graph) loaded and lists.
    expect(/"listings are served on the HTTP front's thread"/.test(log), "the front does not list");
    // The image's V8 flags expose gc, which the front needs (see IndexReaderOptions.collect).
    expect(!/V8's gc is not exposed/.test(log), "the front runs without --expose-gc");
    const ready = await mustDocker([
      "exec",
      spec.name,
      "deno",
      "eval",
      "for (const p of ['healthz', 'readyz']) { const r = await fetch(`http://127.0.0.1:8080/${p}`); " +
      "console.log(p, r.status); }",
    ]);
    expect(/healthz 200/.test(ready.stdout) && /readyz 200/.test(ready.stdout), ready.stdout);
    const st = await Deno.readTextFile(`/proc/${await denoPid(spec.name)}/status`);
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(st)?.[1] ?? 0);
    return `ready after ${seconds.toFixed(1)} s; migrations applied; healthz and readyz 200 ` +
      `from inside; RSS ${(kb("VmRSS") / 1024).toFixed(0)} MiB (anonymous ${
        (kb("RssAnon") / 1024).toFixed(0)
      }, file ${(kb("RssFile") / 1024).toFixed(0)})`;
  });
  await check("offline.stop", async () => {
    expect(ok, "the offline server did not start");
    const s = await stop(spec.name, spec.grace);
    expect(s.exitCode === 0, `exit ${s.exitCode}`);
    expect(/"stopped"/.test(s.logs), 'no "stopped" in the log');
    return `exit 0 in ${s.seconds.toFixed(1)} s`;
  });
}

/** Each systemd unit's ExecStart, outside systemd, against the image's OS and the same code. */
async function systemdScenario(ctx: Ctx) {
  const sim = ctx.sim;
  const db = await freshDatabase("units");
  const token = crypto.randomUUID();
  const mk = async (label: string, owner: number) => {
    const dir = `${ctx.work}/unit-${label}`;
    await Deno.mkdir(dir);
    await Deno.chown(dir, owner, owner);
    return dir;
  };
  const host: UnitHost = {
    clone: ctx.img.clone,
    deno: ctx.img.denoBinary,
    state: await mk("state", UNIT_UID),
    cache: await mk("cache", UNIT_UID),
    work: ctx.work,
  };
  // /etc/backfill/env as deploy/README.md has it, with PORT moved and RELAY_URL set to match.
  const envFile: Record<string, string> = {
    RELAY_ADMIN_PASSWORD: token,
    DATABASE_URL: db,
    BACKFILL_SOURCE: sim.url,
    LEXICON_LIST_URL: `${sim.url}/llms.txt`,
    PORT: String(PORT.unit),
    RELAY_URL: `http://127.0.0.1:${PORT.unit}`,
    LIVE_STREAM_URL: firehose(sim),
  };
  note(
    `systemd: /etc/backfill/env here: ${Object.keys(envFile).join(", ")}; ExecCondition= not run`,
  );
  const narrowSize = sim.largest.get(NARROW);
  expect(narrowSize, `${NARROW} is not among the sim's largest collections`);

  await check("unit.narrow", async () => {
    const { spec, argv } = await unitSpec("backfill-oneshot.service", `${ID}-unit-narrow`, {
      ...envFile,
      BACKFILL_ARGS: `--collection ${NARROW}`,
    }, host);
    const r = await runOnce(spec, ctx.img.image, 600_000);
    expect(r.code === 0, `exit ${r.code}: ${lastLines(r.stdout + r.stderr, 4)}`);
    const rows = await psql(
      db,
      "SELECT collection, imported_count, completed_at IS NOT NULL FROM backfill_progress",
    );
    expect(rows === `${NARROW}|${narrowSize}|t`, `progress rows: ${rows.replace(/\n/g, "; ")}`);
    return `\`${argv.slice(1).join(" ")}\` exit 0 in ${
      r.seconds.toFixed(0)
    } s (first start fills ` +
      `DENO_DIR from the npm registry); only ${NARROW}, ${narrowSize} pairs`;
  });
  await check("unit.oneshot", async () => {
    const { spec, argv } = await unitSpec(
      "backfill-oneshot.service",
      `${ID}-unit-oneshot`,
      envFile,
      host,
    );
    expect(!argv.includes("--collection"), `empty BACKFILL_ARGS gave ${argv.join(" ")}`);
    const r = await runOnce(spec, ctx.img.image, 600_000);
    expect(r.code === 0, `exit ${r.code}: ${lastLines(r.stdout + r.stderr, 4)}`);
    const pg = await progressTotals(db);
    expect(
      pg.completed === sim.collections && pg.imported === sim.entries,
      `Postgres ${
        JSON.stringify(pg)
      }, sim ${`${sim.collections} collections, ${sim.entries} pairs`}`,
    );
    return `exit 0 in ${r.seconds.toFixed(1)} s; ${pg.completed} collections, ` +
      `${pg.imported.toLocaleString("en")} pairs = the sim's`;
  });

  const server = await unitSpec("backfill.service", `${ID}-unit-server`, envFile, host);
  const url = `http://127.0.0.1:${PORT.unit}`;
  const ok = await check("unit.server", async () => {
    const t0 = performance.now();
    await start(server.spec, ctx.img.image);
    await waitFor("backfill.service's /readyz", 180_000, async () => {
      const st = await inspectState(server.spec.name);
      fatalUnless(
        st.running,
        `exited ${st.exitCode}: ${lastLines(await logs(server.spec.name), 3)}`,
      );
      return (await httpGet(`${url}/readyz`)).status === 200 ? true : undefined;
    });
    expect((await httpGet(`${url}/healthz`)).status === 200, "healthz not 200");
    const pid = await denoPid(server.spec.name);
    const maps = await Deno.readTextFile(`/proc/${pid}/maps`);
    expect(maps.includes("libjemalloc"), "jemalloc not loaded (LD_PRELOAD)");
    const st = await Deno.readTextFile(`/proc/${pid}/status`);
    expect(/^Uid:\s+61900\s/m.test(st), "not the dynamic uid");
    const live = await liveConnected(url, token);
    return `\`${server.argv.slice(1).join(" ")}\` ready in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s as uid ${UNIT_UID}, jemalloc loaded, root read-only, ${live.kind} connected`;
  });
  if (ok) {
    await check("unit.trigger", async () => {
      const { spec, argv } = await unitSpec(
        "backfill-catchup-trigger.service",
        `${ID}-unit-trigger`,
        envFile,
        host,
      );
      const before = finishedRuns(await logs(server.spec.name));
      const r = await runOnce(spec, ctx.img.image, 120_000);
      expect(r.code === 0, `exit ${r.code}: ${lastLines(r.stdout + r.stderr, 3)}`);
      expect(/started catch-up/.test(r.stdout), `said ${r.stdout.trim()}`);
      await waitFor("the catch-up in backfill.service to finish", 300_000, async () => {
        const s = await httpGet(`${url}/admin/backfill-collections`, token);
        const running = JSON.parse(s.body).running;
        return !running && finishedRuns(await logs(server.spec.name)) > before ? true : undefined;
      });
      return `\`${argv.slice(1).join(" ")}\` exit 0: ${r.stdout.trim()}`;
    });
    await check("unit.stop", async () => {
      const s = await stop(server.spec.name, server.spec.grace);
      expect(s.exitCode === 0, `exit ${s.exitCode}`);
      expect(s.seconds < server.spec.grace, `took ${s.seconds.toFixed(1)} s`);
      return `exit 0 in ${s.seconds.toFixed(1)} s (TimeoutStopSec=${server.spec.grace})`;
    });
  }
  await check("unit.catchup", async () => {
    const { spec, argv } = await unitSpec(
      "backfill-catchup.service",
      `${ID}-unit-catchup`,
      envFile,
      host,
    );
    const r = await runOnce(spec, ctx.img.image, 600_000);
    expect(r.code === 0, `exit ${r.code}: ${lastLines(r.stdout + r.stderr, 4)}`);
    expect(/\(catch-up\)/.test(r.stdout), `no catch-up: ${lastLines(r.stdout, 2)}`);
    const pg = await progressTotals(db);
    expect(pg.imported === sim.entries, `pairs now ${pg.imported}`);
    return `\`${argv.slice(1).join(" ")}\` exit 0 in ${r.seconds.toFixed(1)} s`;
  });
}

// --- main ---------------------------------------------------------------------------------------

/** Sets everything up and runs the scenarios; false when it did not get as far as checking. */
async function main(opts: { suite: string; scale: number; keep: boolean }): Promise<void> {
  const t0 = performance.now();
  const work = await Deno.makeTempDir({ prefix: "bfimg-" });
  await Deno.chmod(work, 0o755);
  await Deno.mkdir(`${work}/logs`);
  onCleanup("remove the work directory", async () => {
    if (opts.keep) return note(`kept ${work}`);
    await assertNoMounts(work);
    const keptLogs = "/tmp/backfill-image-test-logs";
    await Deno.remove(keptLogs, { recursive: true }).catch(() => {});
    await Deno.rename(`${work}/logs`, keptLogs);
    await Deno.remove(work, { recursive: true });
    note(`logs of this run: ${keptLogs}`);
  });

  await ensurePackages();
  await ensureDaemon(work);
  const img = await buildAll(opts.suite, work, opts.keep);
  const configMaps = new Map<string, Obj>();
  const cm = await readYaml("deploy/k8s/configmap.yaml");
  configMaps.set(cm.metadata.name, cm);
  const sim = await startSim(PORT.sim, [], img.clone);
  const ctx: Ctx = { work, img, configMaps, scale: opts.scale, sim };

  const phases: [string, () => Promise<void>][] = [
    ["stand-in", () => standInChecks(ctx)],
    ["image", () => imageChecks(ctx)],
    ["Deployment", () => deploymentScenario(ctx)],
    ["Job", () => jobScenario(ctx)],
    ["offline", () => offlineScenario(ctx)],
    ["systemd", () => systemdScenario(ctx)],
  ];
  for (const [label, fn] of phases) {
    try {
      await fn();
    } catch (err) {
      console.log(`FAIL  ${label}: ${(err as Error).message}`);
    }
  }
  note(`${((performance.now() - t0) / 1000).toFixed(0)} s in all`);
}

function summary(): number {
  for (const [id, title] of PLAN) {
    if (!results.has(id)) console.log(`FAIL  ${title}: not run (an earlier step failed)`);
  }
  const passed = [...results.values()].filter((r) => r.ok).length;
  console.log(`image: ${passed}/${PLAN.length} checks passed`);
  return passed === PLAN.length ? 0 : 1;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      suite: { type: "string", default: "trixie" },
      scale: { type: "string", default: "110" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  const scale = Number(values.scale);
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (!(scale > 0) || !/^[a-z]+$/.test(values.suite)) {
    console.error(`bad --scale ${values.scale} or --suite ${values.suite}\n${USAGE}`);
    Deno.exit(2);
  }
  if (Deno.uid() !== 0) {
    console.error("test:image needs root (apt-get, dockerd, debootstrap)");
    Deno.exit(2);
  }
  const interrupt = () => {
    console.log("interrupted: cleaning up");
    cleanUp().finally(() => {
      summary();
      Deno.exit(130);
    });
  };
  Deno.addSignalListener("SIGINT", interrupt);
  Deno.addSignalListener("SIGTERM", interrupt);
  try {
    await main({ suite: values.suite, scale, keep: values.keep });
  } catch (err) {
    console.log(`FAIL  setup: ${(err as Error).message}`);
  }
  await cleanUp();
  Deno.exit(summary());
}
