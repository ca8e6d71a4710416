// Static checks of deploy/: every manifest, unit and the Dockerfile, against each other and deno.json.
import assert from "node:assert/strict";
import { parseAllDocuments } from "npm:yaml@^2";

const ROOT = new URL("../", import.meta.url);
const DEPLOY = new URL("deploy/", ROOT);
const K8S = new URL("k8s/", DEPLOY);
const SYSTEMD = new URL("systemd/", DEPLOY);

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

const read = (url: URL) => Deno.readTextFileSync(url);

function yamlDocs(url: URL): Obj[] {
  const docs = parseAllDocuments(read(url));
  return docs.map((d) => {
    assert.equal(d.errors.length, 0, `${url.pathname}: ${d.errors.join("; ")}`);
    return d.toJS() as Obj;
  }).filter((d) => d !== null);
}

function yamlFiles(dir: URL): string[] {
  return [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && /\.ya?ml$/.test(e.name))
    .map((e) => e.name)
    .sort();
}

function loadK8s(): Map<string, Obj> {
  const out = new Map<string, Obj>();
  for (const name of yamlFiles(K8S)) {
    const docs = yamlDocs(new URL(name, K8S));
    assert.equal(docs.length, 1, `${name}: expected one document`);
    assert.ok(docs[0].apiVersion && docs[0].kind, `${name}: apiVersion and kind`);
    out.set(name, docs[0]);
  }
  return out;
}

// --- deno.json tasks ---------------------------------------------------------------------------

const TASKS: Record<string, string> = JSON.parse(read(new URL("deno.json", ROOT))).tasks ?? {};

/** Mode that a deno.json task runs (`deno run ... main.ts <mode>`). */
function taskMode(task: string): string | undefined {
  return TASKS[task]?.match(/\bmain\.ts\s+(\S+)/)?.[1];
}

/** Resolves a command line to the main.ts mode and the arguments after it; checks the mode is real. */
function modeOf(argv: string[]): { mode: string; rest: string[] } {
  const deno = argv.findIndex((a) => a === "deno" || a.endsWith("/deno"));
  assert.ok(deno >= 0, `no deno binary in ${JSON.stringify(argv)}`);
  const sub = argv[deno + 1];
  let mode: string | undefined;
  let rest: string[];
  if (sub === "task") {
    const task = argv[deno + 2];
    assert.ok(task in TASKS, `deno task ${task} is not in deno.json`);
    mode = taskMode(task);
    rest = argv.slice(deno + 3);
  } else {
    assert.equal(sub, "run", `expected deno run/task in ${JSON.stringify(argv)}`);
    const main = argv.indexOf("main.ts");
    assert.ok(main > deno, `main.ts missing in ${JSON.stringify(argv)}`);
    mode = argv[main + 1];
    rest = argv.slice(main + 2);
  }
  assert.ok(mode, `no mode in ${JSON.stringify(argv)}`);
  assert.ok(
    Object.keys(TASKS).some((t) => taskMode(t) === mode),
    `mode ${mode} is not run by any deno.json task`,
  );
  return { mode, rest };
}

Deno.test("deno.json has the tasks deploy/ runs", () => {
  assert.equal(taskMode("start"), "start");
  assert.equal(taskMode("backfill"), "backfill");
  assert.throws(() => modeOf(["deno", "run", "-A", "main.ts", "no-such-mode"]));
  assert.throws(() => modeOf(["deno", "task", "no-such-task"]));
});

// --- Kubernetes ---------------------------------------------------------------------------------

function podSpecOf(doc: Obj): Obj {
  switch (doc.kind) {
    case "Deployment":
    case "Job":
      return doc.spec.template.spec;
    case "CronJob":
      return doc.spec.jobTemplate.spec.template.spec;
  }
  throw new Error(`no pod spec in ${doc.kind}`);
}

/** Literal env of a container: ConfigMap envFrom first, then env (which wins). */
function envOf(container: Obj, configMaps: Map<string, Obj>): Map<string, string | Obj> {
  const env = new Map<string, string | Obj>();
  for (const src of container.envFrom ?? []) {
    if (src.configMapRef) {
      const cm = configMaps.get(src.configMapRef.name);
      assert.ok(cm, `unknown ConfigMap ${src.configMapRef.name}`);
      for (const [k, v] of Object.entries(cm.data ?? {})) env.set(k, String(v));
    }
  }
  for (const e of container.env ?? []) env.set(e.name, e.valueFrom ?? String(e.value ?? ""));
  return env;
}

Deno.test("kubernetes manifests", async (t) => {
  const files = loadK8s();
  const byKind = (kind: string) => [...files.values()].filter((d) => d.kind === kind);
  const one = (kind: string) => {
    const found = byKind(kind);
    assert.equal(found.length, 1, `expected exactly one ${kind}`);
    return found[0];
  };
  const configMaps = new Map(byKind("ConfigMap").map((c) => [c.metadata.name, c]));
  const pvc = one("PersistentVolumeClaim");
  const secret = one("Secret");
  const ns = one("Namespace").metadata.name;
  const deployment = one("Deployment");
  const job = one("Job");
  const cronJob = one("CronJob");
  const service = one("Service");
  const kustomization = one("Kustomization");

  await t.step("every file is a known kind in one namespace", () => {
    const known = [
      "Namespace",
      "Secret",
      "ConfigMap",
      "PersistentVolumeClaim",
      "Deployment",
      "Service",
      "Job",
      "CronJob",
      "Kustomization",
    ];
    for (const [name, doc] of files) {
      assert.ok(known.includes(doc.kind), `${name}: unexpected kind ${doc.kind}`);
      if (!["Namespace", "Kustomization"].includes(doc.kind)) {
        assert.equal(doc.metadata?.namespace, ns, `${name}: namespace`);
      }
    }
    assert.equal(kustomization.namespace, ns);
  });

  const workloads: [string, Obj, string, string[]][] = [
    ["Deployment", deployment, "start", []],
    ["Job", job, "backfill", []],
    ["CronJob", cronJob, "backfill", ["--catch-up"]],
  ];

  for (const [label, doc, wantMode, wantFlags] of workloads) {
    await t.step(`${label}: pod spec`, () => {
      const pod = podSpecOf(doc);
      assert.equal(pod.containers.length, 1, "one container");
      const c = pod.containers[0];
      const env = envOf(c, configMaps);

      const argv = [...(c.command ?? []), ...(c.args ?? [])];
      const { mode, rest } = modeOf(argv);
      assert.equal(mode, wantMode);
      for (const f of wantFlags) assert.ok(rest.includes(f), `${label}: ${f} missing`);
      if (wantFlags.length === 0) assert.ok(!rest.includes("--catch-up"));
      assert.ok(argv.includes("--cached-only"), "image caches deps; run without network");

      const dataDir = env.get("DATA_DIR");
      assert.equal(typeof dataDir, "string", "DATA_DIR set literally");
      assert.ok((dataDir as string).startsWith("/"), "DATA_DIR absolute");
      const claimVolumes = (pod.volumes ?? []).filter((v: Obj) => v.persistentVolumeClaim);
      assert.equal(claimVolumes.length, 1, "one PVC volume");
      assert.equal(claimVolumes[0].persistentVolumeClaim.claimName, pvc.metadata.name);
      const mount = (c.volumeMounts ?? []).find((m: Obj) => m.name === claimVolumes[0].name);
      assert.ok(mount, "PVC volume mounted");
      assert.equal(mount.mountPath, dataDir, "PVC mounted at DATA_DIR");
      assert.ok(!mount.readOnly && !mount.subPath);

      assert.ok(pod.terminationGracePeriodSeconds >= 15, "grace period >= 15 s");
      assert.equal(pod.securityContext?.runAsNonRoot, true);
      assert.ok(pod.securityContext?.runAsUser > 0, "numeric non-root runAsUser");
      assert.ok(Number.isInteger(pod.securityContext?.fsGroup), "fsGroup");
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
      if (c.securityContext?.readOnlyRootFilesystem) {
        const tmp = (c.volumeMounts ?? []).find((m: Obj) => m.mountPath === "/tmp");
        assert.ok(tmp, "read-only root needs a writable /tmp");
      }
      assert.equal(pod.enableServiceLinks, false, "no BACKFILL_* service-link variables");
      assert.ok(c.resources?.requests?.memory && c.resources?.limits?.memory, "resources");

      for (const [k, v] of env) {
        if (k === "RELAY_ADMIN_PASSWORD" || k === "DATABASE_URL") {
          assert.equal(typeof v, "object", `${k} must not be literal`);
          const ref = (v as Obj).secretKeyRef;
          assert.ok(ref, `${k} from a secretKeyRef`);
          assert.equal(ref.name, secret.metadata.name);
          assert.ok(ref.key in secret.stringData, `${k}: key ${ref.key} in the example Secret`);
        }
      }
      if (doc.kind !== "Deployment") {
        assert.ok(["OnFailure", "Never"].includes(pod.restartPolicy), "batch restartPolicy");
      }
    });
  }

  await t.step("Deployment: replicas, strategy, probes, admin token", () => {
    assert.equal(deployment.spec.replicas, 1);
    assert.equal(deployment.spec.strategy?.type, "Recreate");
    const pod = podSpecOf(deployment);
    assert.ok(pod.terminationGracePeriodSeconds >= 30);
    const c = pod.containers[0];
    const env = envOf(c, configMaps);
    const port = Number(env.get("PORT") ?? 8080);
    const resolve = (p: number | string) =>
      typeof p === "number" ? p : c.ports.find((x: Obj) => x.name === p)?.containerPort;
    assert.ok(c.ports.some((p: Obj) => p.containerPort === port), "containerPort = PORT");
    assert.equal(c.livenessProbe.httpGet.path, "/healthz");
    assert.equal(resolve(c.livenessProbe.httpGet.port), port);
    assert.equal(c.readinessProbe.httpGet.path, "/readyz");
    assert.equal(resolve(c.readinessProbe.httpGet.port), port);
    if (c.startupProbe) assert.equal(c.startupProbe.httpGet.path, "/healthz");
    const admin = env.get("RELAY_ADMIN_PASSWORD") as Obj;
    assert.ok(admin?.secretKeyRef, "RELAY_ADMIN_PASSWORD from secretKeyRef");
    assert.notEqual(admin.secretKeyRef.optional, true, "admin token required");

    const labels = deployment.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels)) {
      assert.equal(labels[k], v, `selector ${k}`);
    }
  });

  await t.step("Service: ClusterIP 8080 onto the server pods only", () => {
    assert.equal(service.spec.type ?? "ClusterIP", "ClusterIP");
    const c = podSpecOf(deployment).containers[0];
    const [p] = service.spec.ports;
    assert.equal(p.port, 8080);
    const target = typeof p.targetPort === "number"
      ? p.targetPort
      : c.ports.find((x: Obj) => x.name === p.targetPort)?.containerPort;
    assert.equal(target, Number(envOf(c, configMaps).get("PORT") ?? 8080));
    const selects = (labels: Obj) =>
      Object.entries(service.spec.selector).every(([k, v]) => labels?.[k] === v);
    assert.ok(selects(deployment.spec.template.metadata.labels));
    assert.ok(!selects(job.spec.template.metadata.labels), "Job pods are not endpoints");
    assert.ok(!selects(cronJob.spec.jobTemplate.spec.template.metadata.labels));
  });

  await t.step("Job and CronJob", () => {
    assert.ok(Number.isInteger(job.spec.backoffLimit), "Job backoffLimit");
    assert.equal(job.spec.template.spec.restartPolicy, "OnFailure");
    assert.equal(cronJob.spec.concurrencyPolicy, "Forbid");
    assert.equal(cronJob.spec.schedule.trim().split(/\s+/).length, 5, "cron schedule");
    assert.equal(cronJob.spec.jobTemplate.spec.template.spec.restartPolicy, "OnFailure");
    assert.equal(cronJob.spec.suspend, true, "suspended while the server owns the index");
  });

  await t.step("ConfigMap and Secret", () => {
    for (const cm of configMaps.values()) {
      for (const k of ["RELAY_ADMIN_PASSWORD", "DATABASE_URL"]) {
        assert.ok(!(k in (cm.data ?? {})), `${k} must not be in a ConfigMap`);
      }
    }
    assert.deepEqual(Object.keys(secret.stringData).sort(), [
      "DATABASE_URL",
      "RELAY_ADMIN_PASSWORD",
    ]);
  });

  await t.step("config parses with lib/config.ts (when present)", async () => {
    const url = new URL("lib/config.ts", ROOT);
    let mod: { parseConfig?: (env: Record<string, string>) => Obj };
    try {
      mod = await import(url.href);
    } catch (err) {
      console.log(`skipped: lib/config.ts not importable (${(err as Error).message})`);
      return;
    }
    if (typeof mod.parseConfig !== "function") {
      console.log("skipped: lib/config.ts has no parseConfig");
      return;
    }
    for (const [label, doc] of workloads) {
      const c = podSpecOf(doc).containers[0];
      const env: Record<string, string> = {};
      for (const [k, v] of envOf(c, configMaps)) if (typeof v === "string") env[k] = v;
      const cfg = mod.parseConfig(env);
      assert.equal(cfg.dataDir, env.DATA_DIR, `${label}: dataDir`);
      if (env.PORT) assert.equal(cfg.port, Number(env.PORT), `${label}: port`);
    }
  });

  await t.step("kustomization lists every manifest but the hand-applied ones", () => {
    const listed: string[] = kustomization.resources;
    for (const r of listed) assert.ok(files.has(r), `listed resource ${r} exists`);
    const handApplied = ["secret.example.yaml", "job.yaml"];
    for (const name of files.keys()) {
      if (name === "kustomization.yaml") continue;
      assert.equal(listed.includes(name), !handApplied.includes(name), `${name} listing`);
    }
    const overlay = yamlDocs(new URL("k8s-batch/kustomization.yaml", DEPLOY))[0];
    assert.deepEqual(overlay.resources, ["../k8s"]);
  });

  await t.step("kustomize renders base and batch overlay", async () => {
    if (!(await which("kubectl"))) {
      console.log("skipped: kubectl not installed");
      return;
    }
    const render = async (dir: string) => {
      const out = await run("kubectl", ["kustomize", new URL(dir, DEPLOY).pathname]);
      assert.equal(out.code, 0, out.stderr);
      return parseAllDocuments(out.stdout).map((d) => d.toJS() as Obj);
    };
    const find = (docs: Obj[], kind: string) => docs.find((d) => d.kind === kind)!;
    const base = await render("k8s");
    assert.equal(base.length, kustomization.resources.length);
    assert.equal(find(base, "Deployment").spec.replicas, 1);
    assert.equal(find(base, "CronJob").spec.suspend, true);
    const batch = await render("k8s-batch");
    assert.equal(find(batch, "Deployment").spec.replicas, 0);
    assert.equal(find(batch, "CronJob").spec.suspend, false);
  });
});

// --- Dockerfile -----------------------------------------------------------------------------------

interface Instr {
  op: string;
  args: string;
}

function parseDockerfile(text: string): Instr[] {
  const out: Instr[] = [];
  let buf = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (buf === "" && /^\s*(#|$)/.test(line)) continue;
    if (/^\s*#/.test(line)) continue;
    if (line.endsWith("\\")) {
      buf += line.slice(0, -1) + " ";
      continue;
    }
    buf += line;
    const m = buf.trim().match(/^(\w+)\s+([\s\S]*)$/);
    assert.ok(m, `bad Dockerfile line: ${buf}`);
    out.push({ op: m[1].toUpperCase(), args: m[2].trim() });
    buf = "";
  }
  return out;
}

/** KEY=value pairs of an ENV/ARG instruction (quotes not needed here). */
function pairs(args: string): Record<string, string> {
  return Object.fromEntries(
    args.split(/\s+/).filter(Boolean).map((p) => {
      const i = p.indexOf("=");
      return i < 0 ? [p, ""] : [p.slice(0, i), p.slice(i + 1)];
    }),
  );
}

Deno.test("Dockerfile", async (t) => {
  const ins = parseDockerfile(read(new URL("Dockerfile", DEPLOY)));
  const idx = (pred: (i: Instr) => boolean) => ins.findIndex(pred);
  const env: Record<string, string> = {};
  for (const i of ins.filter((i) => i.op === "ENV")) Object.assign(env, pairs(i.args));

  await t.step("pinned Debian Deno 2 image", () => {
    const args: Record<string, string> = {};
    for (const i of ins.filter((i) => i.op === "ARG")) Object.assign(args, pairs(i.args));
    const from = ins.filter((i) => i.op === "FROM");
    assert.equal(from.length, 1);
    const image = from[0].args.replace(/\$\{(\w+)\}/g, (_, k) => args[k] ?? "");
    assert.match(image, /^denoland\/deno:debian-2\.\d+\.\d+$/);
  });

  await t.step("non-root user owns the cache and the data volume", () => {
    const users = ins.filter((i) => i.op === "USER");
    assert.ok(users.length > 0, "USER set");
    const user = users.at(-1)!.args.split(":")[0];
    assert.ok(!["root", "0"].includes(user), "last USER is not root");
    const k8sUid = podSpecOf(loadK8s().get("deployment.yaml")!).securityContext.runAsUser;
    if (/^\d+$/.test(user)) assert.equal(Number(user), k8sUid, "USER = k8s runAsUser");
    const userAt = idx((i) => i.op === "USER");
    const cacheAt = idx((i) => i.op === "RUN" && /\bdeno (install|cache)\b/.test(i.args));
    assert.ok(cacheAt > userAt, "deps cached as the runtime user");
  });

  await t.step("dependencies cached in their own layer, then the entrypoint", () => {
    const copyManifest = idx((i) => i.op === "COPY" && /\bdeno\.json\b/.test(i.args));
    const installDeps = idx((i) => i.op === "RUN" && /\bdeno install\s*$/.test(i.args));
    const copyAll = idx((i) => i.op === "COPY" && /\s\.\s+\.\/?$/.test(i.args));
    const cacheMain = idx((i) =>
      i.op === "RUN" && /\bdeno (install --entrypoint|cache)\b.*\bmain\.ts\b/.test(i.args)
    );
    assert.ok(copyManifest >= 0 && installDeps > copyManifest, "COPY deno.json; RUN deno install");
    assert.ok(copyAll > installDeps, "sources copied after the dependency layer");
    assert.ok(cacheMain > copyAll, "main.ts graph cached");
  });

  await t.step("DATA_DIR volume, port, command", () => {
    assert.equal(env.DATA_DIR, "/data");
    const vol = ins.find((i) => i.op === "VOLUME");
    assert.ok(vol);
    const vols = vol.args.startsWith("[") ? JSON.parse(vol.args) : vol.args.split(/\s+/);
    assert.ok(vols.includes(env.DATA_DIR), "VOLUME = DATA_DIR");
    const k8sDataDir = podSpecOf(loadK8s().get("deployment.yaml")!).containers[0].env
      .find((e: Obj) => e.name === "DATA_DIR")?.value;
    assert.equal(k8sDataDir, env.DATA_DIR, "image and k8s agree on DATA_DIR");
    const expose = ins.find((i) => i.op === "EXPOSE");
    assert.equal(Number(expose?.args.split("/")[0]), Number(env.PORT ?? 8080));
    const cmd = ins.filter((i) => i.op === "CMD").at(-1);
    assert.ok(cmd);
    assert.equal(modeOf(JSON.parse(cmd.args)).mode, "start");
    assert.ok(!ins.some((i) => i.op === "ENTRYPOINT"), "keep the base image's tini entrypoint");
  });

  await t.step("dockerignore", () => {
    const ignore = read(new URL("Dockerfile.dockerignore", DEPLOY));
    assert.equal(read(new URL("dockerignore", DEPLOY)), ignore);
    const lines = ignore.split("\n").map((l) => l.trim());
    for (const p of [".git", ".env", "data", "node_modules"]) {
      assert.ok(lines.includes(p), `${p} excluded from the build context`);
    }
    for (const p of ["deno.json", "deno.lock", "main.ts", "lib"]) {
      assert.ok(!lines.includes(p), `${p} must stay in the build context`);
    }
  });
});

// --- systemd --------------------------------------------------------------------------------------

type Unit = Map<string, Map<string, string[]>>;

/** systemd's INI dialect: [Section], Key=value (repeatable), # and ; comments, trailing \ joins. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  let buf = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (buf === "" && (line === "" || line.startsWith("#") || line.startsWith(";"))) continue;
    if (line.endsWith("\\")) {
      buf += line.slice(0, -1).trimEnd() + " ";
      continue;
    }
    const full = (buf + line).trim();
    buf = "";
    const sec = full.match(/^\[([^\]]+)\]$/);
    if (sec) {
      section = unit.get(sec[1]) ?? new Map();
      unit.set(sec[1], section);
      continue;
    }
    const eq = full.indexOf("=");
    if (eq <= 0 || !section) throw new Error(`bad unit line: ${full}`);
    const key = full.slice(0, eq).trim();
    const value = full.slice(eq + 1).trim();
    section.set(key, [...(section.get(key) ?? []), value]);
  }
  return unit;
}

function words(s: string): string[] {
  return [...s.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

function seconds(v: string): number {
  let total = 0;
  for (const [, n, u] of v.matchAll(/(\d+(?:\.\d+)?)\s*([a-z]*)/g)) {
    const mult: Record<string, number> = { "": 1, s: 1, sec: 1, min: 60, m: 60, h: 3600, hr: 3600 };
    assert.ok(u in mult, `unit ${u}`);
    total += Number(n) * mult[u];
  }
  return total;
}

Deno.test("unit parser", () => {
  const u = parseUnit("# c\n[A]\nK=1\nK=2\n; c\nL=a \\\n  b\n[B]\nK=\n");
  assert.deepEqual(u.get("A")?.get("K"), ["1", "2"]);
  assert.deepEqual(u.get("A")?.get("L"), ["a b"]);
  assert.deepEqual(u.get("B")?.get("K"), [""]);
  assert.throws(() => parseUnit("K=1\n"));
  assert.deepEqual(words(`a 'b c' "d"`), ["a", "b c", "d"]);
  assert.equal(seconds("1min 30s"), 90);
});

Deno.test("systemd units", async (t) => {
  const names = [...Deno.readDirSync(SYSTEMD)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "backfill-catchup.service",
    "backfill-catchup.timer",
    "backfill-oneshot.service",
    "backfill.service",
  ]);
  const units = new Map(names.map((n) => [n, parseUnit(read(new URL(n, SYSTEMD)))]));
  const get = (unit: string, section: string, key: string) =>
    units.get(unit)?.get(section)?.get(key) ?? [];
  const last = (unit: string, section: string, key: string) => get(unit, section, key).at(-1);
  const envOfUnit = (unit: string) =>
    Object.fromEntries(
      get(unit, "Service", "Environment").flatMap(words).map((a) => {
        const i = a.indexOf("=");
        return [a.slice(0, i), a.slice(i + 1)];
      }),
    );

  const services: [string, string, string[], string][] = [
    ["backfill.service", "start", [], "simple"],
    ["backfill-oneshot.service", "backfill", [], "oneshot"],
    ["backfill-catchup.service", "backfill", ["--catch-up"], "oneshot"],
  ];

  for (const [name, wantMode, flags, type] of services) {
    await t.step(name, () => {
      assert.equal(last(name, "Service", "Type"), type);
      const exec = get(name, "Service", "ExecStart");
      assert.equal(exec.length, 1, "one ExecStart");
      const argv = words(exec[0]);
      assert.ok(argv[0].startsWith("/") && argv[0].endsWith("/deno"), "absolute deno path");
      const { mode, rest } = modeOf(argv);
      assert.equal(mode, wantMode);
      for (const f of flags) assert.ok(rest.includes(f), `${f} missing`);
      if (flags.length === 0) assert.ok(!rest.includes("--catch-up"));

      const wd = last(name, "Service", "WorkingDirectory");
      assert.ok(wd?.startsWith("/"), "WorkingDirectory absolute");
      const env = envOfUnit(name);
      const state = last(name, "Service", "StateDirectory");
      assert.ok(state, "StateDirectory");
      assert.equal(env.DATA_DIR, `/var/lib/${state}`, "DATA_DIR = StateDirectory");
      const cache = last(name, "Service", "CacheDirectory");
      assert.ok(cache && env.DENO_DIR?.startsWith(`/var/cache/${cache}`), "DENO_DIR in cache dir");
      assert.ok(get(name, "Service", "EnvironmentFile").includes("-/etc/backfill/env"));

      const yes = (k: string) => assert.equal(last(name, "Service", k), "yes", k);
      assert.equal(last(name, "Service", "ProtectSystem"), "strict");
      assert.ok(["yes", "read-only", "tmpfs"].includes(last(name, "Service", "ProtectHome")!));
      yes("PrivateTmp");
      yes("NoNewPrivileges");
      const families = words(get(name, "Service", "RestrictAddressFamilies").join(" "));
      assert.deepEqual(families.sort(), ["AF_INET", "AF_INET6", "AF_UNIX"]);
      assert.notEqual(last(name, "Service", "MemoryDenyWriteExecute"), "yes", "V8 JIT");
      assert.equal(last(name, "Service", "KillSignal") ?? "SIGTERM", "SIGTERM");
      assert.ok(seconds(last(name, "Service", "TimeoutStopSec") ?? "0") >= 15, "TimeoutStopSec");
      assert.ok(
        last(name, "Service", "DynamicUser") === "yes" || last(name, "Service", "User"),
        "unprivileged user",
      );
    });
  }

  await t.step("units share one user, state and cache", () => {
    for (const key of ["User", "StateDirectory", "CacheDirectory", "WorkingDirectory"]) {
      const values = new Set(services.map(([n]) => last(n, "Service", key)));
      assert.equal(values.size, 1, `${key} differs between units`);
    }
  });

  await t.step("server unit", () => {
    assert.equal(last("backfill.service", "Service", "Restart"), "on-failure");
    assert.ok(get("backfill.service", "Install", "WantedBy").includes("multi-user.target"));
  });

  await t.step("no two units on one DATA_DIR", () => {
    const conflicts = (u: string) => words(get(u, "Unit", "Conflicts").join(" "));
    assert.ok(
      conflicts("backfill-oneshot.service").includes("backfill.service") ||
        conflicts("backfill.service").includes("backfill-oneshot.service"),
      "oneshot and server conflict",
    );
    // Conflicts= is symmetric: the timer-driven unit must not be able to stop the server.
    assert.ok(!conflicts("backfill-catchup.service").includes("backfill.service"));
    assert.ok(!conflicts("backfill.service").includes("backfill-catchup.service"));
    const cond = get("backfill-catchup.service", "Service", "ExecCondition").join(" ");
    assert.match(cond, /\bbackfill\.service\b/);
    assert.match(cond, /\bbackfill-oneshot\.service\b/);
    assert.match(cond, /activating/, "a running oneshot is 'activating'");
  });

  await t.step("catch-up timer", () => {
    const timer = "backfill-catchup.timer";
    assert.ok(last(timer, "Timer", "OnCalendar"), "OnCalendar");
    assert.equal(last(timer, "Timer", "Persistent"), "true");
    assert.ok(seconds(last(timer, "Timer", "RandomizedDelaySec") ?? "0") > 0);
    const target = last(timer, "Timer", "Unit");
    assert.equal(target, "backfill-catchup.service");
    assert.ok(units.has(target!));
    assert.ok(get(timer, "Install", "WantedBy").includes("timers.target"));
  });

  await t.step("systemd-analyze verify", async () => {
    if (!(await which("systemd-analyze"))) {
      console.log("skipped: systemd-analyze not installed");
      return;
    }
    const verify = async (files: Record<string, string>) => {
      const dir = await Deno.makeTempDir({ prefix: "units-" });
      try {
        const paths = [];
        for (const [n, text] of Object.entries(files)) {
          // The deno binary is not installed here; the rest of each line is still checked.
          await Deno.writeTextFile(
            `${dir}/${n}`,
            text.replaceAll("/usr/local/bin/deno", "/bin/true"),
          );
          paths.push(`${dir}/${n}`);
        }
        return await run("systemd-analyze", ["verify", "--man=no", ...paths]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    };
    const texts = Object.fromEntries(names.map((n) => [n, read(new URL(n, SYSTEMD))]));
    const ok = await verify(texts);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr.trim(), "", "systemd-analyze warnings");
    const broken = await verify({
      ...texts,
      "backfill.service": texts["backfill.service"].replace("Type=simple", "Type=bogus"),
    });
    assert.ok(broken.code !== 0 || broken.stderr.trim() !== "", "verify catches a bad unit");
  });
});

// --- helpers ------------------------------------------------------------------------------------

async function run(cmd: string, args: string[]) {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function which(name: string): Promise<boolean> {
  return (await run("sh", ["-c", `command -v ${name}`])).code === 0;
}
