// Validates Prometheus Operator objects (ServiceMonitor, PrometheusRule) against the
// operator's CRD schemas, as compiled in the npm package @kubernetes-models/prometheus-operator
// (installed by scripts/setup.sh), for tests/integration/kubernetes.rs.
//
//   node validate_crds.mjs NPM_PREFIX < objects.json      (a JSON array of objects)
//
// Prints one line per object ("ok KIND NAME" or "invalid KIND NAME: why"); exits 1 if any
// object is invalid or of a kind it has no schema for. Strict: the compiled schemas accept
// unknown fields (the CRDs leave objects open), so every field must also be one the
// package's type declarations (.d.ts, generated from the same CRDs) name.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { pathToFileURL } from "node:url";

/** Interfaces (their fields and the types of those) of every .d.ts below `dirs`. */
function declarations(dirs) {
  const ifaces = new Map();
  const alias = new Map();
  const files = [];
  const walk = (d) => {
    for (const f of readdirSync(d)) {
      const p = `${d}/${f}`;
      if (statSync(p).isDirectory()) walk(p);
      else if (f.endsWith(".d.ts")) files.push(p);
    }
  };
  dirs.forEach(walk);
  for (const f of files) {
    const text = readFileSync(f, "utf8");
    for (const m of text.matchAll(/export type \{ (\w+) as (\w+)/g)) alias.set(m[2], m[1]);
    for (const m of text.matchAll(/^export interface (\w+)(?: extends ([^{]+))? \{\n([\s\S]*?)^\}/gm)) {
      const fields = new Map();
      const body = m[3].replace(/\/\*\*[\s\S]*?\*\//g, "");
      for (const p of body.matchAll(/^    "([^"]+)"\??: (.*?);?$/gm)) fields.set(p[1], p[2]);
      const parents = (m[2] || "").split(",").map((x) => x.trim()).filter(Boolean);
      ifaces.set(m[1], { fields, parents });
    }
  }
  const resolve = (t) => {
    const name = (t.match(/^Array<(\w+)>$/) || t.match(/^(\w+)$/) || [])[1];
    const n = alias.get(name) || name;
    return ifaces.has(n) ? n : null;
  };
  const field = (iface, key) => {
    const i = ifaces.get(iface);
    if (i.fields.has(key)) return i.fields.get(key);
    for (const p of i.parents) {
      if (p === "TypeMeta" && (key === "apiVersion" || key === "kind")) return "string";
      const r = resolve(p);
      const t = r && field(r, key);
      if (t) return t;
    }
    return null;
  };
  return { resolve, field };
}

/** Fields of `value` that its declared type does not have, as paths. */
function unknownFields(decl, iface, value, path, out) {
  if (value === null || typeof value !== "object") return;
  if (Array.isArray(value)) return value.forEach((v, i) => unknownFields(decl, iface, v, `${path}[${i}]`, out));
  for (const [k, v] of Object.entries(value)) {
    const t = decl.field(iface, k);
    if (t === null) out.push(`${path}.${k}`);
    else {
      const inner = decl.resolve(t);
      if (inner) unknownFields(decl, inner, v, `${path}.${k}`, out);
    }
  }
}

const prefix = process.argv[2];
const models = `${prefix}/node_modules/@kubernetes-models/prometheus-operator`;
const decl = declarations([`${models}/monitoring.coreos.com/v1`, `${prefix}/node_modules/@kubernetes-models/apimachinery`]);
const objects = JSON.parse(readFileSync(0, "utf8"));
let bad = 0;
for (const o of objects) {
  const [group, version] = String(o.apiVersion).split("/");
  const name = `${o.kind} ${o.metadata?.name}`;
  let Model;
  try {
    const mod = await import(pathToFileURL(`${models}/${group}/${version}/${o.kind}.js`).href);
    Model = mod[o.kind];
  } catch (e) {
    console.log(`invalid ${name}: no schema for ${o.apiVersion} ${o.kind}`);
    bad++;
    continue;
  }
  try {
    new Model(o).validate();
    const unknown = [];
    if (version !== "v1" || !decl.resolve(`I${o.kind}`)) throw new Error(`no type declarations for ${o.apiVersion} ${o.kind}`);
    unknownFields(decl, decl.resolve(`I${o.kind}`), o, "", unknown);
    if (unknown.length) throw new Error(`unknown fields ${unknown.join(", ")}`);
    console.log(`ok ${name}`);
  } catch (e) {
    console.log(`invalid ${name}: ${e.message}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
