/**
 * A small ONNX graph builder: nodes, initialisers, typed inputs and outputs, serialised with the
 * ONNX protobuf schema (`onnx-proto`, generated from onnx.proto). onedp builds its graphs from
 * its own module structure and PyTorch-layout state dicts rather than tracing, so the builder
 * only has to name values and encode protobuf.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** The opset the graphs target: every op used is in ONNX 17, which onnxruntime and onnxruntime-web run. */
export const OPSET = 17;

/** A dimension: a fixed size or a symbolic name (e.g. "batch"). */
export type Dim = number | string;

/** Integers are INT / INTS attributes; floats are given as { f } or { floats } (1.0 is a float). */
type AttrValue = number | number[] | string | { f: number } | { floats: number[] };

const enum DataType {
  FLOAT = 1,
  UINT8 = 2,
  INT64 = 7,
}

const ELEM: Record<'float32' | 'int64' | 'uint8', DataType> = { float32: DataType.FLOAT, int64: DataType.INT64, uint8: DataType.UINT8 };

export class OnnxGraph {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly names = new Set<string>();
  private readonly domains = new Set<string>();
  private counter = 0;

  constructor(readonly name: string) {}

  /** A fresh value name with a readable prefix. */
  fresh(prefix: string): string {
    let n = `${prefix}_${this.counter++}`;
    while (this.names.has(n)) n = `${prefix}_${this.counter++}`;
    this.names.add(n);
    return n;
  }

  input(name: string, type: 'float32' | 'int64' | 'uint8', dims: Dim[]): string {
    this.claim(name);
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Marks `value` as the graph output `name` (through an Identity when the names differ). */
  output(value: string, name: string, type: 'float32' | 'int64', dims: Dim[]): void {
    if (value !== name) {
      this.claim(name);
      this.nodes.push(onnx.NodeProto.create({ opType: 'Identity', input: [value], output: [name], name: `out_${name}` }));
    }
    this.outputs.push(valueInfo(name, type, dims));
  }

  /** A float32 constant (weights, biases, scalars). */
  float(prefix: string, data: ArrayLike<number>, dims: number[]): string {
    const name = this.fresh(prefix);
    const f = Float32Array.from(data);
    if (f.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`onnx: initializer ${name} has ${f.length} values for dims [${dims}]`);
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) }));
    return name;
  }

  /** A uint8 constant (packed quantised weights). */
  uint8(prefix: string, data: Uint8Array, dims: number[]): string {
    const name = this.fresh(prefix);
    if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`onnx: initializer ${name} has ${data.length} bytes for dims [${dims}]`);
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: DataType.UINT8, rawData: data }));
    return name;
  }

  int64(prefix: string, data: number[]): string {
    const name = this.fresh(prefix);
    const b = BigInt64Array.from(data.map((v) => BigInt(v)));
    this.initializers.push(onnx.TensorProto.create({ name, dims: [data.length], dataType: DataType.INT64, rawData: new Uint8Array(b.buffer) }));
    return name;
  }

  /** Adds a node; returns its output name (or names, when `outputs` > 1). */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs = 1, domain = ''): string {
    return this.opN(opType, inputs, attrs, outputs, domain)[0];
  }

  opN(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs = 1, domain = ''): string[] {
    const out = Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase()));
    if (domain) this.domains.add(domain);
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        domain,
        input: inputs,
        output: out,
        name: out[0],
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    return out;
  }

  /** The serialised ModelProto. */
  toBytes(docString: string, metadata: Record<string, string> = {}): Uint8Array {
    const graph = onnx.GraphProto.create({ name: this.name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs });
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'onedp',
      producerVersion: '0.1.0',
      docString,
      opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: OPSET }), ...[...this.domains].map((domain) => onnx.OperatorSetIdProto.create({ domain, version: 1 }))],
      graph,
      metadataProps: Object.entries(metadata).map(([key, value]) => onnx.StringStringEntryProto.create({ key, value })),
    });
    return onnx.ModelProto.encode(model).finish();
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`onnx: value name ${name} used twice`);
    this.names.add(name);
  }
}

function valueInfo(name: string, type: 'float32' | 'int64' | 'uint8', dims: Dim[]): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: ELEM[type],
        shape: onnx.TensorShapeProto.create({ dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) }),
      }),
    }),
  });
}

function attribute(name: string, v: AttrValue): InstanceType<typeof onnx.AttributeProto> {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(v) });
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`onnx: attribute ${name} = ${v} is not an integer; pass { f: ${v} } for a float`);
    return onnx.AttributeProto.create({ name, type: T.INT, i: v });
  }
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: v });
  if ('f' in v) return onnx.AttributeProto.create({ name, type: T.FLOAT, f: v.f });
  return onnx.AttributeProto.create({ name, type: T.FLOATS, floats: v.floats });
}

/** Decodes an ONNX model's header for inspection and validation (inputs, outputs, opset). */
export function describeModel(bytes: Uint8Array): { inputs: string[]; outputs: string[]; opset: number; nodes: number; metadata: Record<string, string> } {
  const m = onnx.ModelProto.decode(bytes);
  if (!m.graph) throw new Error('not an ONNX model: no graph');
  const opset = m.opsetImport.find((o) => !o.domain)?.version;
  return {
    inputs: (m.graph.input ?? []).map((i) => i.name ?? ''),
    outputs: (m.graph.output ?? []).map((o) => o.name ?? ''),
    opset: typeof opset === 'number' ? opset : Number(opset ?? 0),
    nodes: (m.graph.node ?? []).length,
    metadata: Object.fromEntries((m.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? ''])),
  };
}
