// Static checks of deploy/: every manifest, unit and the Dockerfile, against each other and deno.json.
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotStrictEquals,
  assertStrictEquals,
  assertThrows,
} from "./_assert.ts";
import { parseAllDocuments } from "yaml";
import { shippedV8Flags } from "./_child.ts";
import { parseConfig } from "../lib/app/config.ts";
import { runStatusCli } from "../lib/cli/status.ts";

const ROOT = new URL("../", import.meta.url);
const DEPLOY = new URL("deploy/", ROOT);
const K8S = new URL("k8s/", DEPLOY);
const K8S_BATCH = new URL("k8s-batch/", DEPLOY);
const SYSTEMD = new URL("systemd/", DEPLOY);

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

const read = (url: URL) => Deno.readTextFileSync(url);

function yamlDocs(url: URL): Obj[] {
  const docs = parseAllDocuments(read(url));
  return docs.map((d) => {
    assertStrictEquals(d.errors.length, 0, `${url.pathname}: ${d.errors.join("; ")}`);
    return d.toJS() as Obj;
  }).filter((d) => d !== null);
}

function yamlFiles(dir: URL): string[] {
  return [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && /\.ya?ml$/.test(e.name))
    .map((e) => e.name)
    .sort();
}

function loadK8s(dir: URL = K8S): Map<string, Obj> {
  const out = new Map<string, Obj>();
  for (const name of yamlFiles(dir)) {
    const docs = yamlDocs(new URL(name, dir));
    assertStrictEquals(docs.length, 1, `${name}: expected one document`);
    assert(docs[0].apiVersion && docs[0].kind, `${name}: apiVersion and kind`);
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
  assert(deno >= 0, `no deno binary in ${JSON.stringify(argv)}`);
  const sub = argv[deno + 1];
  let mode: string | undefined;
  let rest: string[];
  if (sub === "task") {
    const task = argv[deno + 2];
    assert(task in TASKS, `deno task ${task} is not in deno.json`);
    mode = taskMode(task);
    rest = argv.slice(deno + 3);
  } else {
    assertStrictEquals(sub, "run", `expected deno run/task in ${JSON.stringify(argv)}`);
    const main = argv.indexOf("main.ts");
    assert(main > deno, `main.ts missing in ${JSON.stringify(argv)}`);
    mode = argv[main + 1];
    rest = argv.slice(main + 2);
  }
  assert(mode, `no mode in ${JSON.stringify(argv)}`);
  assert(
    Object.keys(TASKS).some((t) => taskMode(t) === mode),
    `mode ${mode} is not run by any deno.json task`,
  );
  return { mode, rest };
}

/** The `--v8-flags` of the start and backfill tasks; deploy/ runs each mode with its task's. */
const V8_FLAGS: Record<string, string> = (() => {
  const json = read(new URL("deno.json", ROOT));
  return { start: shippedV8Flags(json, "start"), backfill: shippedV8Flags(json, "backfill") };
})();

Deno.test("deno.json has the tasks deploy/ runs", () => {
  assertStrictEquals(taskMode("start"), "start");
  assertStrictEquals(taskMode("backfill"), "backfill");
  assertStrictEquals(taskMode("status"), "status");
  assertThrows(() => modeOf(["deno", "run", "-A", "main.ts", "no-such-mode"]));
  assertThrows(() => modeOf(["deno", "task", "no-such-task"]));
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
      assert(cm, `unknown ConfigMap ${src.configMapRef.name}`);
      for (const [k, v] of Object.entries(cm.data ?? {})) env.set(k, String(v));
    }
  }
  for (const e of container.env ?? []) env.set(e.name, e.valueFrom ?? String(e.value ?? ""));
  return env;
}

/** The URL a `status` pod talks to must be the Service: its name (optionally namespace-qualified) and port. */
function assertServiceUrl(value: unknown, service: Obj, ns: string): URL {
  assertStrictEquals(typeof value, "string", "RELAY_URL set literally");
  const url = new URL(value as string);
  assertStrictEquals(url.protocol, "http:");
  const name = service.metadata.name;
  const hosts = [name, `${name}.${ns}`, `${name}.${ns}.svc`, `${name}.${ns}.svc.cluster.local`];
  assert(hosts.includes(url.hostname), `RELAY_URL host ${url.hostname} is not the Service`);
  const port = Number(url.port || 80);
  assert(service.spec.ports.some((p: Obj) => p.port === port), "RELAY_URL port = Service port");
  assert(url.pathname === "/" && !url.search && !url.username, "bare origin");
  return url;
}

Deno.test("kubernetes manifests", async (t) => {
  const files = loadK8s();
  const batchFiles = loadK8s(K8S_BATCH);
  const byKind = (kind: string, from = files) => [...from.values()].filter((d) => d.kind === kind);
  const one = (kind: string, from = files) => {
    const found = byKind(kind, from);
    assertStrictEquals(found.length, 1, `expected exactly one ${kind}`);
    return found[0];
  };
  const configMaps = new Map(byKind("ConfigMap").map((c) => [c.metadata.name, c]));
  const pvc = one("PersistentVolumeClaim");
  const secret = one("Secret");
  const ns = one("Namespace").metadata.name;
  const deployment = one("Deployment");
  const job = one("Job");
  // Server topology: the CronJob only asks the running server for a catch-up.
  const cronJob = one("CronJob");
  const service = one("Service");
  const kustomization = one("Kustomization");
  // Batch topology: the overlay's own CronJob opens the index.
  const batchCronJob = one("CronJob", batchFiles);
  const overlay = one("Kustomization", batchFiles);

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
    for (const [dir, docs] of [["k8s", files], ["k8s-batch", batchFiles]] as const) {
      for (const [name, doc] of docs) {
        assert(known.includes(doc.kind), `${dir}/${name}: unexpected kind ${doc.kind}`);
        if (!["Namespace", "Kustomization"].includes(doc.kind)) {
          assertStrictEquals(doc.metadata?.namespace, ns, `${dir}/${name}: namespace`);
        }
      }
    }
    assertStrictEquals(kustomization.namespace, ns);
    assertStrictEquals(overlay.namespace ?? ns, ns);
    assertNotStrictEquals(
      cronJob.metadata.name,
      batchCronJob.metadata.name,
      "distinct CronJob names",
    );
  });

  // Workloads that open the index: PVC at DATA_DIR.
  const workloads: [string, Obj, string, string[]][] = [
    ["Deployment", deployment, "start", []],
    ["Job", job, "backfill", []],
    ["batch CronJob", batchCronJob, "backfill", ["--catch-up"]],
  ];

  /** Checks every pod here shares: one container, non-root, no service links, secrets by reference. */
  const commonPodChecks = (label: string, doc: Obj) => {
    const pod = podSpecOf(doc);
    assertStrictEquals(pod.containers.length, 1, "one container");
    const c = pod.containers[0];
    const env = envOf(c, configMaps);
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    assert(argv.includes("--cached-only"), "image caches deps; run without network");

    assert(pod.terminationGracePeriodSeconds >= 15, "grace period >= 15 s");
    assertStrictEquals(pod.securityContext?.runAsNonRoot, true);
    assert(pod.securityContext?.runAsUser > 0, "numeric non-root runAsUser");
    assert(Number.isInteger(pod.securityContext?.fsGroup), "fsGroup");
    assertStrictEquals(c.securityContext?.allowPrivilegeEscalation, false);
    if (c.securityContext?.readOnlyRootFilesystem) {
      const tmp = (c.volumeMounts ?? []).find((m: Obj) => m.mountPath === "/tmp");
      assert(tmp, "read-only root needs a writable /tmp");
    }
    assertStrictEquals(pod.enableServiceLinks, false, "no BACKFILL_* service-link variables");
    assert(c.resources?.requests?.memory && c.resources?.limits?.memory, "resources");
    const image = podSpecOf(deployment).containers[0].image;
    assertStrictEquals(c.image, image, `${label}: same image as the Deployment`);

    for (const [k, v] of env) {
      if (k === "RELAY_ADMIN_PASSWORD" || k === "DATABASE_URL") {
        assertStrictEquals(typeof v, "object", `${k} must not be literal`);
        const ref = (v as Obj).secretKeyRef;
        assert(ref, `${k} from a secretKeyRef`);
        assertStrictEquals(ref.name, secret.metadata.name);
        assert(ref.key in secret.stringData, `${k}: key ${ref.key} in the example Secret`);
      }
    }
    if (doc.kind !== "Deployment") {
      assert(["OnFailure", "Never"].includes(pod.restartPolicy), "batch restartPolicy");
    }
    return { pod, c, env, argv };
  };

  for (const [label, doc, wantMode, wantFlags] of workloads) {
    await t.step(`${label}: pod spec`, () => {
      const { pod, c, env, argv } = commonPodChecks(label, doc);
      const { mode, rest } = modeOf(argv);
      assertStrictEquals(mode, wantMode);
      for (const f of wantFlags) assert(rest.includes(f), `${label}: ${f} missing`);
      if (wantFlags.length === 0) assert(!rest.includes("--catch-up"));

      // The image carries the server's flags; a batch run sets its task's.
      assertStrictEquals(
        env.get("DENO_V8_FLAGS") ?? V8_FLAGS.start,
        V8_FLAGS[mode],
        `${label}: DENO_V8_FLAGS of the ${mode} task`,
      );
      const dataDir = env.get("DATA_DIR");
      assertStrictEquals(typeof dataDir, "string", "DATA_DIR set literally");
      assert((dataDir as string).startsWith("/"), "DATA_DIR absolute");
      const claimVolumes = (pod.volumes ?? []).filter((v: Obj) => v.persistentVolumeClaim);
      assertStrictEquals(claimVolumes.length, 1, "one PVC volume");
      assertStrictEquals(claimVolumes[0].persistentVolumeClaim.claimName, pvc.metadata.name);
      const mount = (c.volumeMounts ?? []).find((m: Obj) => m.name === claimVolumes[0].name);
      assert(mount, "PVC volume mounted");
      assertStrictEquals(mount.mountPath, dataDir, "PVC mounted at DATA_DIR");
      assert(!mount.readOnly && !mount.subPath);
    });
  }

  await t.step("trigger CronJob: pod spec", () => {
    const { pod, env, argv } = commonPodChecks("trigger CronJob", cronJob);
    const { mode, rest } = modeOf(argv);
    assertStrictEquals(mode, "status", "runs the status CLI against the server");
    assertEquals(rest, ["catch-up"], "status catch-up (the server's default source)");
    for (const p of ["--allow-net", "--allow-env"]) assert(argv.includes(p), `${p} missing`);
    for (const p of ["-A", "--allow-all", "--allow-write", "--allow-ffi", "--allow-run"]) {
      assert(!argv.includes(p), `${p}: the CLI needs only net and env`);
    }

    assertServiceUrl(env.get("RELAY_URL"), service, ns);
    const admin = env.get("RELAY_ADMIN_PASSWORD") as Obj;
    assert(admin?.secretKeyRef, "RELAY_ADMIN_PASSWORD from secretKeyRef");
    assertNotStrictEquals(admin.secretKeyRef.optional, true, "admin token required");

    // Never touches the index: no PVC, no DATA_DIR, nothing from the ConfigMap it does not need.
    assert(!(pod.volumes ?? []).some((v: Obj) => v.persistentVolumeClaim), "no PVC volume");
    assert(!env.has("DATA_DIR"), "no DATA_DIR");
    assert(!env.has("DATABASE_URL"), "no DATABASE_URL");
  });

  await t.step("Deployment: replicas, strategy, probes, admin token", () => {
    assertStrictEquals(deployment.spec.replicas, 1);
    assertStrictEquals(deployment.spec.strategy?.type, "Recreate");
    const pod = podSpecOf(deployment);
    assert(pod.terminationGracePeriodSeconds >= 30);
    const c = pod.containers[0];
    const env = envOf(c, configMaps);
    const port = Number(env.get("PORT") ?? 8080);
    const resolve = (p: number | string) =>
      typeof p === "number" ? p : c.ports.find((x: Obj) => x.name === p)?.containerPort;
    assert(c.ports.some((p: Obj) => p.containerPort === port), "containerPort = PORT");
    assertStrictEquals(c.livenessProbe.httpGet.path, "/healthz");
    assertStrictEquals(resolve(c.livenessProbe.httpGet.port), port);
    assertStrictEquals(c.readinessProbe.httpGet.path, "/readyz");
    assertStrictEquals(resolve(c.readinessProbe.httpGet.port), port);
    if (c.startupProbe) assertStrictEquals(c.startupProbe.httpGet.path, "/healthz");
    const admin = env.get("RELAY_ADMIN_PASSWORD") as Obj;
    assert(admin?.secretKeyRef, "RELAY_ADMIN_PASSWORD from secretKeyRef");
    assertNotStrictEquals(admin.secretKeyRef.optional, true, "admin token required");
    const triggerAdmin = envOf(podSpecOf(cronJob).containers[0], configMaps)
      .get("RELAY_ADMIN_PASSWORD") as Obj;
    assertEquals(
      triggerAdmin.secretKeyRef,
      admin.secretKeyRef,
      "trigger sends the server's token",
    );

    const labels = deployment.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels)) {
      assertStrictEquals(labels[k], v, `selector ${k}`);
    }
  });

  await t.step("Service: ClusterIP 8080 onto the server pods only", () => {
    assertStrictEquals(service.spec.type ?? "ClusterIP", "ClusterIP");
    const c = podSpecOf(deployment).containers[0];
    const [p] = service.spec.ports;
    assertStrictEquals(p.port, 8080);
    const target = typeof p.targetPort === "number"
      ? p.targetPort
      : c.ports.find((x: Obj) => x.name === p.targetPort)?.containerPort;
    assertStrictEquals(target, Number(envOf(c, configMaps).get("PORT") ?? 8080));
    const selects = (labels: Obj) =>
      Object.entries(service.spec.selector).every(([k, v]) => labels?.[k] === v);
    assert(selects(deployment.spec.template.metadata.labels));
    assert(!selects(job.spec.template.metadata.labels), "Job pods are not endpoints");
    assert(!selects(cronJob.spec.jobTemplate.spec.template.metadata.labels));
    assert(!selects(batchCronJob.spec.jobTemplate.spec.template.metadata.labels));
  });

  await t.step("Job and CronJobs", () => {
    assert(Number.isInteger(job.spec.backoffLimit), "Job backoffLimit");
    assertStrictEquals(job.spec.template.spec.restartPolicy, "OnFailure");
    for (const cj of [cronJob, batchCronJob]) {
      const name = cj.metadata.name;
      assertStrictEquals(cj.spec.concurrencyPolicy, "Forbid", `${name}: Forbid`);
      assertStrictEquals(cj.spec.schedule.trim().split(/\s+/).length, 5, `${name}: cron schedule`);
      assertStrictEquals(cj.spec.jobTemplate.spec.template.spec.restartPolicy, "OnFailure");
      assert(Number.isInteger(cj.spec.jobTemplate.spec.backoffLimit), `${name}: backoffLimit`);
      assertNotStrictEquals(cj.spec.suspend, true, `${name}: active in its topology`);
    }
    const deadline = (cj: Obj) => cj.spec.jobTemplate.spec.activeDeadlineSeconds;
    assert(deadline(cronJob) > 0 && deadline(cronJob) <= 3600, "trigger: short deadline");
    assert(deadline(batchCronJob) > 0 && deadline(batchCronJob) < 86400, "batch: ends in a day");
  });

  await t.step("ConfigMap and Secret", () => {
    for (const cm of configMaps.values()) {
      for (const k of ["RELAY_ADMIN_PASSWORD", "DATABASE_URL"]) {
        assert(!(k in (cm.data ?? {})), `${k} must not be in a ConfigMap`);
      }
    }
    assertEquals(Object.keys(secret.stringData).sort(), [
      "DATABASE_URL",
      "RELAY_ADMIN_PASSWORD",
    ]);
  });

  await t.step("config parses with lib/app/config.ts", () => {
    const literalEnv = (doc: Obj) => {
      const env: Record<string, string> = {};
      for (const [k, v] of envOf(podSpecOf(doc).containers[0], configMaps)) {
        if (typeof v === "string") env[k] = v;
      }
      return env;
    };
    for (const [label, doc] of workloads) {
      const env = literalEnv(doc);
      const cfg = parseConfig(env);
      assertStrictEquals(cfg.dataDir, env.DATA_DIR, `${label}: dataDir`);
      if (env.PORT) assertStrictEquals(cfg.port, Number(env.PORT), `${label}: port`);
    }
    const env = literalEnv(cronJob);
    const cfg = parseConfig({ ...env, RELAY_ADMIN_PASSWORD: "t0ken" });
    assertStrictEquals(cfg.relayUrl, env.RELAY_URL.replace(/\/+$/, ""), "trigger: relayUrl");
    assertStrictEquals(cfg.adminPassword, "t0ken", "trigger: admin token");
  });

  await t.step("trigger command drives lib/cli/status.ts", async () => {
    const c = podSpecOf(cronJob).containers[0];
    const { rest } = modeOf([...(c.command ?? []), ...(c.args ?? [])]);
    const relayUrl = envOf(c, configMaps).get("RELAY_URL") as string;
    const call = async (status: number, body: Obj) => {
      const seen: { method: string; url: string; auth: string | null }[] = [];
      const fetch = (input: string | URL | Request, init?: RequestInit) => {
        const req = new Request(input, init);
        seen.push({
          method: req.method,
          url: req.url,
          auth: req.headers.get("authorization"),
        });
        return Promise.resolve(Response.json(body, { status }));
      };
      const lines: string[] = [];
      const code = await runStatusCli({
        args: rest,
        relayUrl,
        password: "t0ken",
        fetch,
        out: (l: string) => lines.push(l),
        err: (l: string) => lines.push(l),
      });
      return { code, seen, lines };
    };
    const ok = await call(202, { source: "bsky.network", collections: 3 });
    assertStrictEquals(ok.code, 0, ok.lines.join("\n"));
    assertStrictEquals(ok.seen.length, 1, "one request");
    assertStrictEquals(ok.seen[0].method, "POST");
    const sent = new URL(ok.seen[0].url);
    assertStrictEquals(sent.origin, new URL(relayUrl).origin, "to the Service");
    assertStrictEquals(sent.pathname, "/admin/backfill-collections");
    assertStrictEquals(sent.searchParams.get("mode"), "catch-up");
    assert(!sent.searchParams.has("source"), "the server's default source");
    assertStrictEquals(ok.seen[0].auth, "Bearer t0ken");
    // A run already in progress fails the Job (documented in README and the manifest).
    const busy = await call(409, { error: "Conflict", message: "already running" });
    assertStrictEquals(busy.code, 1);
  });

  await t.step("kustomizations: base lists every manifest but the hand-applied ones", () => {
    const listed: string[] = kustomization.resources;
    for (const r of listed) assert(files.has(r), `listed resource ${r} exists`);
    const handApplied = ["secret.example.yaml", "job.yaml"];
    for (const name of files.keys()) {
      if (name === "kustomization.yaml") continue;
      assertStrictEquals(listed.includes(name), !handApplied.includes(name), `${name} listing`);
    }

    // The overlay: the base plus every file of its own, the trigger suspended, the server at 0.
    assertStrictEquals(overlay.resources[0], "../k8s");
    const own = [...batchFiles.keys()].filter((n) => n !== "kustomization.yaml").sort();
    assertEquals(overlay.resources.slice(1).sort(), own);
    const patchFor = (kind: string, name: string) =>
      (overlay.patches ?? []).find((p: Obj) => p.target?.kind === kind && p.target?.name === name);
    assert(patchFor("Deployment", deployment.metadata.name), "overlay patches the Deployment");
    assert(patchFor("CronJob", cronJob.metadata.name), "overlay suspends/removes the trigger");
  });

  // Reported as ignored, not passed, where kubectl is not installed.
  await t.step({
    name: "kustomize renders base and batch overlay",
    ignore: !(await which("kubectl")),
    fn: async () => {
      const render = async (dir: string) => {
        const out = await run("kubectl", ["kustomize", dir]);
        assertStrictEquals(out.code, 0, out.stderr);
        return parseAllDocuments(out.stdout).map((d) => d.toJS() as Obj);
      };
      const find = (docs: Obj[], kind: string, name?: string) =>
        docs.find((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
      const image = (doc: Obj) => podSpecOf(doc).containers[0].image;
      const base = await render(K8S.pathname);
      assertStrictEquals(base.length, kustomization.resources.length);
      assertStrictEquals(find(base, "Deployment")!.spec.replicas, 1);
      const baseCronJobs = base.filter((d) => d.kind === "CronJob");
      assertEquals(baseCronJobs.map((d) => d.metadata.name), [cronJob.metadata.name]);
      assertNotStrictEquals(baseCronJobs[0].spec.suspend, true, "the server topology catches up");

      const batch = await render(K8S_BATCH.pathname);
      assertStrictEquals(batch.length, base.length + overlay.resources.length - 1);
      for (const d of batch) {
        if (d.kind !== "Namespace") assertStrictEquals(d.metadata.namespace, ns, d.metadata.name);
        assertStrictEquals(
          d.metadata.labels?.["app.kubernetes.io/part-of"],
          "backfill",
          d.metadata.name,
        );
      }
      assertStrictEquals(find(batch, "Deployment")!.spec.replicas, 0);
      const trigger = find(batch, "CronJob", cronJob.metadata.name);
      assert(!trigger || trigger.spec.suspend === true, "no trigger without a server");
      const batchJob = find(batch, "CronJob", batchCronJob.metadata.name);
      assert(batchJob, "batch CronJob rendered");
      assertNotStrictEquals(batchJob.spec.suspend, true);
      assertStrictEquals(image(batchJob), image(find(batch, "Deployment")!));

      // An image set in the base (kustomize edit set image) reaches the overlay's own CronJob too.
      const tmp = await Deno.makeTempDir({ prefix: "kustomize-" });
      try {
        for (const [dir, names] of [["k8s", files], ["k8s-batch", batchFiles]] as const) {
          await Deno.mkdir(`${tmp}/${dir}`);
          for (const name of names.keys()) {
            let text = read(new URL(`${dir}/${name}`, DEPLOY));
            if (dir === "k8s" && name === "kustomization.yaml") {
              text = text.replace(
                /^images:[\s\S]*$/m,
                "images:\n  - name: backfill\n    newName: registry.example/backfill\n    newTag: t1\n",
              );
            }
            await Deno.writeTextFile(`${tmp}/${dir}/${name}`, text);
          }
        }
        const pinned = await render(`${tmp}/k8s-batch`);
        const pods = pinned.filter((d) => ["Deployment", "CronJob"].includes(d.kind));
        assertStrictEquals(pods.length, 3);
        for (const d of pods) {
          assertStrictEquals(image(d), "registry.example/backfill:t1", d.metadata.name);
        }
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    },
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
    assert(m, `bad Dockerfile line: ${buf}`);
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
    assertStrictEquals(from.length, 1);
    const image = from[0].args.replace(/\$\{(\w+)\}/g, (_, k) => args[k] ?? "");
    assertMatch(image, /^denoland\/deno:debian-2\.\d+\.\d+$/);
  });

  await t.step("non-root user owns the cache and the data volume", () => {
    const users = ins.filter((i) => i.op === "USER");
    assert(users.length > 0, "USER set");
    const user = users.at(-1)!.args.split(":")[0];
    assert(!["root", "0"].includes(user), "last USER is not root");
    const k8sUid = podSpecOf(loadK8s().get("deployment.yaml")!).securityContext.runAsUser;
    if (/^\d+$/.test(user)) assertStrictEquals(Number(user), k8sUid, "USER = k8s runAsUser");
    const userAt = idx((i) => i.op === "USER");
    const cacheAt = idx((i) => i.op === "RUN" && /\bdeno (install|cache)\b/.test(i.args));
    assert(cacheAt > userAt, "deps cached as the runtime user");
  });

  await t.step("dependencies cached in their own layer, then the entrypoint", () => {
    const copyManifest = idx((i) => i.op === "COPY" && /\bdeno\.json\b/.test(i.args));
    const installDeps = idx((i) => i.op === "RUN" && /\bdeno install\s*$/.test(i.args));
    // Sources are named one by one: `COPY . .` would take .env and data/ into the image with a
    // builder that ignores Dockerfile.dockerignore (the classic one).
    assert(!ins.some((i) => i.op === "COPY" && /(^|\s)\.\s/.test(i.args)), "no COPY . .");
    const copyMain = idx((i) => i.op === "COPY" && /\bmain\.ts\b/.test(i.args));
    const cacheMain = idx((i) =>
      i.op === "RUN" && /\bdeno (install --entrypoint|cache)\b.*\bmain\.ts\b/.test(i.args)
    );
    assert(copyManifest >= 0 && installDeps > copyManifest, "COPY deno.json; RUN deno install");
    assert(copyMain > installDeps, "sources copied after the dependency layer");
    assert(cacheMain > copyMain, "main.ts graph cached");
  });

  await t.step("DATA_DIR volume, port, command", () => {
    assertStrictEquals(env.DATA_DIR, "/data");
    const vol = ins.find((i) => i.op === "VOLUME");
    assert(vol);
    const vols = vol.args.startsWith("[") ? JSON.parse(vol.args) : vol.args.split(/\s+/);
    assert(vols.includes(env.DATA_DIR), "VOLUME = DATA_DIR");
    const k8sDataDir = podSpecOf(loadK8s().get("deployment.yaml")!).containers[0].env
      .find((e: Obj) => e.name === "DATA_DIR")?.value;
    assertStrictEquals(k8sDataDir, env.DATA_DIR, "image and k8s agree on DATA_DIR");
    const expose = ins.find((i) => i.op === "EXPOSE");
    assertStrictEquals(Number(expose?.args.split("/")[0]), Number(env.PORT ?? 8080));
    const cmd = ins.filter((i) => i.op === "CMD").at(-1);
    assert(cmd);
    assertStrictEquals(modeOf(JSON.parse(cmd.args)).mode, "start");
    assert(!ins.some((i) => i.op === "ENTRYPOINT"), "keep the base image's tini entrypoint");
  });

  await t.step("the start task's V8 flags; jemalloc preloaded from a path a RUN created", () => {
    assertStrictEquals(env.DENO_V8_FLAGS, V8_FLAGS.start);
    assert(env.LD_PRELOAD, "LD_PRELOAD");
    const envAt = idx((i) => i.op === "ENV" && /\bLD_PRELOAD=/.test(i.args));
    const runAt = idx((i) =>
      i.op === "RUN" && /\blibjemalloc2\b/.test(i.args) && i.args.includes(env.LD_PRELOAD)
    );
    assert(runAt >= 0 && runAt < envAt, "libjemalloc2 installed and linked before LD_PRELOAD");
  });

  await t.step("dockerignore", () => {
    const ignore = read(new URL("Dockerfile.dockerignore", DEPLOY));
    assertStrictEquals(read(new URL("dockerignore", DEPLOY)), ignore);
    const lines = ignore.split("\n").map((l) => l.trim());
    for (const p of [".git", ".env", "data", "node_modules"]) {
      assert(lines.includes(p), `${p} excluded from the build context`);
    }
    for (const p of ["deno.json", "deno.lock", "main.ts", "lib"]) {
      assert(!lines.includes(p), `${p} must stay in the build context`);
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
    assert(u in mult, `unit ${u}`);
    total += Number(n) * mult[u];
  }
  return total;
}

Deno.test("unit parser", () => {
  const u = parseUnit("# c\n[A]\nK=1\nK=2\n; c\nL=a \\\n  b\n[B]\nK=\n");
  assertEquals(u.get("A")?.get("K"), ["1", "2"]);
  assertEquals(u.get("A")?.get("L"), ["a b"]);
  assertEquals(u.get("B")?.get("K"), [""]);
  assertThrows(() => parseUnit("K=1\n"));
  assertEquals(words(`a 'b c' "d"`), ["a", "b c", "d"]);
  assertStrictEquals(seconds("1min 30s"), 90);
});

Deno.test("systemd units", async (t) => {
  const names = [...Deno.readDirSync(SYSTEMD)].map((e) => e.name).sort();
  assertEquals(names, [
    "backfill-catchup-trigger.service",
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

  const TRIGGER = "backfill-catchup-trigger.service";
  const services: [string, string, string[], string][] = [
    ["backfill.service", "start", [], "simple"],
    ["backfill-oneshot.service", "backfill", [], "oneshot"],
    ["backfill-catchup.service", "backfill", ["--catch-up"], "oneshot"],
    [TRIGGER, "status", ["catch-up"], "oneshot"],
  ];
  /** The units that open the index (DATA_DIR); the trigger only talks to the server. */
  const indexUnits = services.map(([n]) => n).filter((n) => n !== TRIGGER);

  for (const [name, wantMode, flags, type] of services) {
    await t.step(name, () => {
      assertStrictEquals(last(name, "Service", "Type"), type);
      const exec = get(name, "Service", "ExecStart");
      assertStrictEquals(exec.length, 1, "one ExecStart");
      const argv = words(exec[0]);
      assert(argv[0].startsWith("/") && argv[0].endsWith("/deno"), "absolute deno path");
      const { mode, rest } = modeOf(argv);
      assertStrictEquals(mode, wantMode);
      for (const f of flags) assert(rest.includes(f), `${f} missing`);
      if (flags.length === 0) assert(!rest.includes("--catch-up"));

      const wd = last(name, "Service", "WorkingDirectory");
      assert(wd?.startsWith("/"), "WorkingDirectory absolute");
      const env = envOfUnit(name);
      const state = last(name, "Service", "StateDirectory");
      if (indexUnits.includes(name)) {
        assertStrictEquals(env.DENO_V8_FLAGS, V8_FLAGS[mode], `the ${mode} task's V8 flags`);
        assertMatch(env.LD_PRELOAD ?? "", /\/libjemalloc\.so\.2$/, "jemalloc preloaded");
        assert(state, "StateDirectory");
        assertStrictEquals(env.DATA_DIR, `/var/lib/${state}`, "DATA_DIR = StateDirectory");
      } else {
        assert(!state && !("DATA_DIR" in env), "no index: no StateDirectory, no DATA_DIR");
      }
      assert(!("RELAY_ADMIN_PASSWORD" in env), "admin token only in /etc/backfill/env");
      const cache = last(name, "Service", "CacheDirectory");
      assert(cache && env.DENO_DIR?.startsWith(`/var/cache/${cache}`), "DENO_DIR in cache dir");
      assert(get(name, "Service", "EnvironmentFile").includes("-/etc/backfill/env"));

      const yes = (k: string) => assertStrictEquals(last(name, "Service", k), "yes", k);
      assertStrictEquals(last(name, "Service", "ProtectSystem"), "strict");
      assert(["yes", "read-only", "tmpfs"].includes(last(name, "Service", "ProtectHome")!));
      yes("PrivateTmp");
      yes("NoNewPrivileges");
      const families = words(get(name, "Service", "RestrictAddressFamilies").join(" "));
      assertEquals(families.sort(), ["AF_INET", "AF_INET6", "AF_UNIX"]);
      assertNotStrictEquals(last(name, "Service", "MemoryDenyWriteExecute"), "yes", "V8 JIT");
      assertStrictEquals(last(name, "Service", "KillSignal") ?? "SIGTERM", "SIGTERM");
      assert(seconds(last(name, "Service", "TimeoutStopSec") ?? "0") >= 15, "TimeoutStopSec");
      assert(
        last(name, "Service", "DynamicUser") === "yes" || last(name, "Service", "User"),
        "unprivileged user",
      );
    });
  }

  await t.step("units share one user, state and cache", () => {
    for (const key of ["User", "StateDirectory", "CacheDirectory", "WorkingDirectory"]) {
      const units = key === "StateDirectory" ? indexUnits : services.map(([n]) => n);
      const values = new Set(units.map((n) => last(n, "Service", key)));
      assertStrictEquals(values.size, 1, `${key} differs between units`);
    }
  });

  await t.step("server unit", () => {
    assertStrictEquals(last("backfill.service", "Service", "Restart"), "on-failure");
    assert(get("backfill.service", "Install", "WantedBy").includes("multi-user.target"));
  });

  await t.step("no two units on one DATA_DIR", () => {
    const conflicts = (u: string) => words(get(u, "Unit", "Conflicts").join(" "));
    assert(
      conflicts("backfill-oneshot.service").includes("backfill.service") ||
        conflicts("backfill.service").includes("backfill-oneshot.service"),
      "oneshot and server conflict",
    );
    // Conflicts= is symmetric: the timer-driven unit must not be able to stop the server.
    for (const u of ["backfill-catchup.service", TRIGGER]) {
      assert(!conflicts(u).includes("backfill.service"), `${u} conflicts with the server`);
      assert(!conflicts("backfill.service").includes(u), `server conflicts with ${u}`);
    }
    const cond = get("backfill-catchup.service", "Service", "ExecCondition").join(" ");
    assertMatch(cond, /\bbackfill\.service\b/);
    assertMatch(cond, /\bbackfill-oneshot\.service\b/);
    assertMatch(cond, /activating/, "a running oneshot is 'activating'");
  });

  await t.step("catch-up on a server host goes through the server's admin API", () => {
    // The timer's unit pulls the trigger in; the trigger runs only while the server is up.
    const wants = words(get("backfill-catchup.service", "Unit", "Wants").join(" "));
    assert(wants.includes(TRIGGER), "backfill-catchup.service Wants= the trigger");
    const cond = get(TRIGGER, "Service", "ExecCondition");
    assertStrictEquals(cond.length, 1, "one ExecCondition");
    assertMatch(
      cond[0],
      /\bis-active\b.*\bbackfill\.service\b/,
      "skipped unless the server is up",
    );
    const argv = words(get(TRIGGER, "Service", "ExecStart")[0]);
    for (const p of ["--allow-net", "--allow-env"]) assert(argv.includes(p), `${p} missing`);
    for (const p of ["-A", "--allow-all", "--allow-write", "--allow-ffi", "--allow-run"]) {
      assert(!argv.includes(p), `${p}: the CLI needs only net and env`);
    }
    assert(argv.includes("--frozen"), "deno.lock is read-only to the service");
    // Restarts must stay bounded: a 409 (a run in progress) would otherwise retry forever.
    if (last(TRIGGER, "Service", "Restart") === "on-failure") {
      assert(Number(last(TRIGGER, "Unit", "StartLimitBurst")) > 0, "StartLimitBurst");
      assert(seconds(last(TRIGGER, "Unit", "StartLimitIntervalSec") ?? "0") > 0);
    }

    // RELAY_URL points at the server unit's listener.
    const server = envOfUnit("backfill.service");
    const relay = new URL(envOfUnit(TRIGGER).RELAY_URL ?? `http://localhost:${server.PORT}`);
    assertStrictEquals(relay.protocol, "http:");
    assertStrictEquals(
      Number(relay.port || 80),
      Number(server.PORT ?? 8080),
      "RELAY_URL port = PORT",
    );
    const host = server.HOST ?? "0.0.0.0";
    const loopback = ["127.0.0.1", "localhost", "[::1]"];
    assert(
      ["0.0.0.0", "::"].includes(host)
        ? loopback.includes(relay.hostname)
        : relay.hostname === host,
      `RELAY_URL host ${relay.hostname} does not reach HOST=${host}`,
    );
    for (const u of ["backfill-catchup.service", TRIGGER]) {
      const after = words(get(u, "Unit", "After").join(" "));
      assert(after.includes("backfill.service"), `${u}: decide after the server's start job`);
    }
  });

  await t.step("catch-up timer", () => {
    const timer = "backfill-catchup.timer";
    assert(last(timer, "Timer", "OnCalendar"), "OnCalendar");
    assertStrictEquals(last(timer, "Timer", "Persistent"), "true");
    assert(seconds(last(timer, "Timer", "RandomizedDelaySec") ?? "0") > 0);
    const target = last(timer, "Timer", "Unit");
    assertStrictEquals(target, "backfill-catchup.service");
    assert(units.has(target!));
    assert(get(timer, "Install", "WantedBy").includes("timers.target"));
  });

  // Reported as ignored, not passed, where systemd-analyze is not installed.
  await t.step({
    name: "systemd-analyze verify",
    ignore: !(await which("systemd-analyze")),
    fn: async () => {
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
      assertStrictEquals(ok.code, 0, ok.stderr);
      assertStrictEquals(ok.stderr.trim(), "", "systemd-analyze warnings");
      const broken = await verify({
        ...texts,
        "backfill.service": texts["backfill.service"].replace("Type=simple", "Type=bogus"),
      });
      assert(broken.code !== 0 || broken.stderr.trim() !== "", "verify catches a bad unit");
    },
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
