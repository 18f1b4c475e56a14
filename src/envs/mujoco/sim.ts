/**
 * MuJoCo through its official WebAssembly build (`mujoco-js`), in Node and the browser alike: a
 * model compiled from MJCF text written to the module's in-memory file system, its data, stepping,
 * and the whole integration state as numbers for snapshot/restore.
 */
import type { MainModule, MjData, MjModel } from 'mujoco-js';

let loading: Promise<MainModule> | null = null;

/** The MuJoCo module, loaded once (about 0.4 s). */
export function loadMujoco(): Promise<MainModule> {
  loading ??= import('mujoco-js').then(async (m) => {
    const mj = await m.default();
    (mj as unknown as { FS: { mkdir(p: string): void } }).FS.mkdir('/onedp');
    return mj;
  });
  return loading;
}

/** mjtObj values used here. */
export const MJ_OBJ = { body: 1, joint: 3, geom: 5, site: 6, actuator: 19 } as const;
/** What `mj_step` reads besides the model (and time): the integration state. */
const STATE_FIELDS = ['qpos', 'qvel', 'act', 'ctrl', 'mocap_pos', 'mocap_quat', 'qacc_warmstart', 'qfrc_applied', 'xfrc_applied'] as const;

let models = 0;

export class MujocoSim {
  private constructor(
    readonly mj: MainModule,
    readonly model: MjModel,
    readonly data: MjData,
  ) {}

  /** Compiles MJCF text; a compile error names `source` and MuJoCo's message. */
  static async fromXml(xml: string, source: string): Promise<MujocoSim> {
    return MujocoSim.compile(await loadMujoco(), xml, source);
  }

  /** `fromXml` with the module already loaded (environments made synchronously, as the harness does). */
  static compile(mj: MainModule, xml: string, source: string): MujocoSim {
    const fs = (mj as unknown as { FS: { writeFile(p: string, s: string): void; unlink(p: string): void } }).FS;
    const file = `/onedp/model-${models++}.xml`;
    fs.writeFile(file, xml);
    let model: MjModel | null = null;
    try {
      model = mj.MjModel.loadFromXML(file);
    } catch (e) {
      throw new Error(`${source}: MuJoCo cannot compile the model (${e instanceof Error ? e.message : String(e)})`);
    } finally {
      fs.unlink(file);
    }
    if (!model) throw new Error(`${source}: MuJoCo cannot compile the model`);
    return new MujocoSim(mj, model, new mj.MjData(model));
  }

  id(type: keyof typeof MJ_OBJ, name: string): number {
    const i = this.mj.mj_name2id(this.model, MJ_OBJ[type], name);
    if (i < 0) throw new Error(`MuJoCo model has no ${type} "${name}"`);
    return i;
  }

  forward(): void {
    this.mj.mj_forward(this.model, this.data);
  }

  step(n = 1): void {
    for (let i = 0; i < n; i++) this.mj.mj_step(this.model, this.data);
  }

  reset(): void {
    this.mj.mj_resetData(this.model, this.data);
  }

  /**
   * Everything `mj_step` reads, copied out: time, qpos, qvel, act, ctrl, mocap poses and the
   * solver's warm start. `setState` of it continues exactly as this simulation would. (Copied
   * field by field: the binding's mj_getState fills a copy of the array it is given, not the
   * array, so its output is lost.)
   */
  getState(): Float64Array {
    const parts = STATE_FIELDS.map((f) => this.field(f));
    const out = new Float64Array(1 + parts.reduce((n, p) => n + p.length, 0));
    out[0] = this.data.time;
    let off = 1;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  setState(s: Float64Array): void {
    const parts = STATE_FIELDS.map((f) => this.field(f));
    const n = 1 + parts.reduce((k, p) => k + p.length, 0);
    if (s.length !== n) throw new Error(`MuJoCo state has ${s.length} values, this model needs ${n}`);
    this.data.time = s[0];
    let off = 1;
    for (const p of parts) {
      p.set(s.subarray(off, off + p.length));
      off += p.length;
    }
    this.forward();
  }

  private field(name: (typeof STATE_FIELDS)[number]): Float64Array {
    return this.data[name] as unknown as Float64Array;
  }

  /** Position (3) of a body, or of a site. */
  bodyPos(id: number): [number, number, number] {
    const p = this.data.xpos as unknown as Float64Array;
    return [p[3 * id], p[3 * id + 1], p[3 * id + 2]];
  }

  sitePos(id: number): [number, number, number] {
    const p = this.data.site_xpos as unknown as Float64Array;
    return [p[3 * id], p[3 * id + 1], p[3 * id + 2]];
  }

  /** A body's orientation as MuJoCo stores it, (w, x, y, z). */
  bodyQuat(id: number): [number, number, number, number] {
    const q = this.data.xquat as unknown as Float64Array;
    return [q[4 * id], q[4 * id + 1], q[4 * id + 2], q[4 * id + 3]];
  }

  dispose(): void {
    this.data.delete();
    this.model.delete();
  }
}
