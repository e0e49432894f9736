#!/usr/bin/env python3
"""Strict protobuf-JSON checks of nightjar's export, with Google's protobuf runtime.

  strict_json.py parse PROTO_DIR FILE...
      Every non-empty line of every FILE must parse as tetragon.GetEventsResponse with
      json_format.Parse(ignore_unknown_fields=False): an unknown field, a wrong enum name or
      a wrong type is an error. Prints a JSON summary (lines, kinds seen, errors).
  strict_json.py contract PROTO_DIR TETRA_BINARY
      Every message and enum of nightjar's .proto files must equal Tetragon's as compiled
      into the tetra binary (Go embeds each file's descriptor): same field names, numbers,
      types, labels and oneofs; same enum values.

The .proto files are compiled with protoc (Debian's protobuf-compiler; the well-known
types from libprotobuf-dev in /usr/include).
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def compile_protos(proto_dir):
    files = sorted(str(p.relative_to(proto_dir)) for p in pathlib.Path(proto_dir).rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "set.pb"
        subprocess.run(
            ["protoc", "-I", proto_dir, "-I", "/usr/include", "--include_imports", f"--descriptor_set_out={out}"]
            + files,
            check=True,
        )
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def parse(proto_dir, paths):
    pool = descriptor_pool.DescriptorPool()
    for f in compile_protos(proto_dir).file:
        pool.Add(f)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("tetragon.GetEventsResponse"))
    lines, kinds, errors = 0, {}, []
    for path in paths:
        for n, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            lines += 1
            try:
                msg = json_format.Parse(line, cls(), ignore_unknown_fields=False)
                kind = msg.WhichOneof("event") or "none"
                kinds[kind] = kinds.get(kind, 0) + 1
            except Exception as e:  # json_format raises ParseError; report any failure
                errors.append(f"{path}:{n}: {e}: {line[:300]}")
    print(json.dumps({"lines": lines, "kinds": kinds, "errors": errors[:20], "error_count": len(errors)}))
    return 1 if errors else 0


def varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


# FileDescriptorProto's top-level fields and their wire types, to find where one embedded
# descriptor ends in the binary.
FILE_FIELDS = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 2, 8: 2, 9: 2, 10: 0, 11: 0, 12: 2, 14: 0}


def tetra_descriptors(binary):
    data = pathlib.Path(binary).read_bytes()
    found = {}
    for m in re.finditer(rb"\n[\x05-\x7f]tetragon/[a-z_]+\.proto", data):
        i, start, seen = m.start(), m.start(), set()
        while i < len(data):
            tag, j = varint(data, i)
            f, w = tag >> 3, tag & 7
            if FILE_FIELDS.get(f) != w or (f in (1, 2, 12) and f in seen):
                break
            seen.add(f)
            if w == 2:
                n, j = varint(data, j)
                j += n
            else:
                _, j = varint(data, j)
            if j > len(data):
                break
            i = j
        try:
            fd = descriptor_pb2.FileDescriptorProto.FromString(data[start:i])
        except Exception:
            continue
        if fd.name not in found or i - start > found[fd.name][0]:
            found[fd.name] = (i - start, fd)
    return {name: fd for name, (_, fd) in found.items()}


def shapes(fd):
    """Full name -> comparable shape of every message and enum of a file."""
    out = {}

    def msg(m, prefix):
        name = f"{prefix}.{m.name}"
        fields = sorted(
            (f.name, f.number, f.type, f.label, f.type_name,
             m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") and not f.proto3_optional else "",
             f.proto3_optional)
            for f in m.field
        )
        out[name] = ("message", fields)
        for n in m.nested_type:
            msg(n, name)
        for e in m.enum_type:
            out[f"{name}.{e.name}"] = ("enum", sorted((v.name, v.number) for v in e.value))

    for m in fd.message_type:
        msg(m, "." + fd.package)
    for e in fd.enum_type:
        out[f".{fd.package}.{e.name}"] = ("enum", sorted((v.name, v.number) for v in e.value))
    return out


def contract(proto_dir, binary):
    theirs = {}
    for fd in tetra_descriptors(binary).values():
        theirs.update(shapes(fd))
    if not theirs:
        print(json.dumps({"error": f"no tetragon descriptors found in {binary}"}))
        return 1
    ours, problems = {}, []
    for fd in compile_protos(proto_dir).file:
        if fd.package == "tetragon":
            ours.update(shapes(fd))
    for name, shape in sorted(ours.items()):
        if name not in theirs:
            problems.append(f"{name}: not in Tetragon's API")
        elif shape != theirs[name]:
            problems.append(f"{name}: differs: ours {shape[1]} / Tetragon's {theirs[name][1]}")
    print(json.dumps({"checked": len(ours), "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "parse":
        sys.exit(parse(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) == 4 and sys.argv[1] == "contract":
        sys.exit(contract(sys.argv[2], sys.argv[3]))
    sys.exit(__doc__)
