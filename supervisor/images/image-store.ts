// The images' persistent records (SQLite through supervisor/store): manifests (what an image is: config, layers),
// the names and tags that point at them, and the holders (pods, containers) that keep them from removal and GC.
// A row is written only after every blob and snapshot it names is on disk (pull.ts), in one transaction.
import { type Db, type Migration, migrate } from '../store';
import type { ImageLayer, ImageRecord, ImageRuntimeConfig } from './types';

export const IMAGES_MIGRATIONS: Migration[] = [
  {
    version: 1,
    description: 'image manifests, names and tags, holders',
    up(db) {
      db.exec(`
        CREATE TABLE image_manifests (
          digest TEXT PRIMARY KEY,
          config_digest TEXT NOT NULL,
          config TEXT NOT NULL,
          layers TEXT NOT NULL,
          size INTEGER NOT NULL
        );
        CREATE TABLE images (
          name TEXT NOT NULL,
          digest TEXT NOT NULL REFERENCES image_manifests(digest),
          index_digest TEXT,
          pulled_at INTEGER NOT NULL,
          PRIMARY KEY (name, digest)
        );
        CREATE TABLE image_tags (
          name TEXT NOT NULL,
          tag TEXT NOT NULL,
          digest TEXT NOT NULL,
          PRIMARY KEY (name, tag),
          FOREIGN KEY (name, digest) REFERENCES images(name, digest) ON DELETE CASCADE
        );
        CREATE TABLE image_holders (
          holder TEXT NOT NULL,
          digest TEXT NOT NULL,
          PRIMARY KEY (holder, digest)
        );
      `);
    },
  },
];

export interface StoredManifest {
  digest: string;
  configDigest: string;
  config: ImageRuntimeConfig;
  layers: ImageLayer[];
  size: number;
}

export interface ImageStore {
  list(): ImageRecord[];
  /** Record a pulled image: its manifest, its name (and index), and the tag moved to it. One transaction. */
  put(image: { name: string; tag: string | null; indexDigest: string | null; manifest: StoredManifest; pulledAt: number }): void;
  /** Remove a tag; the image row stays. */
  untag(name: string, tag: string): void;
  /** Remove a name's image row (and its tags). The manifest stays until GC finds it unreferenced. */
  removeImage(name: string, digest: string): void;
  manifests(): StoredManifest[];
  /** Manifests some image row or holder still references; and the index blobs the image rows name. */
  referenced(): { manifests: Set<string>; indexes: Set<string> };
  deleteManifest(digest: string): void;
  holdersOf(digest: string): string[];
  hasManifest(digest: string): boolean;
  retain(digest: string, holder: string): void;
  release(holder: string): void;
}

interface Row {
  name: string;
  digest: string;
  pulled_at: number;
  config_digest: string;
  config: string;
  layers: string;
  size: number;
}

/** The SQLite store; runs the images migrations on `db` first. */
export function sqliteImageStore(db: Db): ImageStore {
  migrate(db, 'images', IMAGES_MIGRATIONS);
  const q = {
    list: db.prepare(`SELECT i.name, i.digest, i.pulled_at, m.config_digest, m.config, m.layers, m.size
      FROM images i JOIN image_manifests m ON m.digest = i.digest ORDER BY i.name, i.pulled_at DESC`),
    tags: db.prepare('SELECT name, tag, digest FROM image_tags ORDER BY name, tag'),
    putManifest: db.prepare(`INSERT INTO image_manifests (digest, config_digest, config, layers, size) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (digest) DO NOTHING`),
    putImage: db.prepare(`INSERT INTO images (name, digest, index_digest, pulled_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (name, digest) DO UPDATE SET pulled_at = excluded.pulled_at, index_digest = COALESCE(excluded.index_digest, images.index_digest)`),
    putTag: db.prepare(`INSERT INTO image_tags (name, tag, digest) VALUES (?, ?, ?) ON CONFLICT (name, tag) DO UPDATE SET digest = excluded.digest`),
    untag: db.prepare('DELETE FROM image_tags WHERE name = ? AND tag = ?'),
    removeImage: db.prepare('DELETE FROM images WHERE name = ? AND digest = ?'),
    manifests: db.prepare('SELECT digest, config_digest, config, layers, size FROM image_manifests'),
    imageDigests: db.prepare('SELECT digest, index_digest FROM images'),
    heldDigests: db.prepare('SELECT DISTINCT digest FROM image_holders'),
    deleteManifest: db.prepare('DELETE FROM image_manifests WHERE digest = ?'),
    holdersOf: db.prepare('SELECT holder FROM image_holders WHERE digest = ? ORDER BY holder'),
    hasManifest: db.prepare('SELECT 1 FROM image_manifests WHERE digest = ?'),
    retain: db.prepare('INSERT INTO image_holders (holder, digest) VALUES (?, ?) ON CONFLICT DO NOTHING'),
    release: db.prepare('DELETE FROM image_holders WHERE holder = ?'),
  };
  const toManifest = (r: Omit<Row, 'name' | 'pulled_at'>): StoredManifest => ({
    digest: r.digest,
    configDigest: r.config_digest,
    config: JSON.parse(r.config) as ImageRuntimeConfig,
    layers: JSON.parse(r.layers) as ImageLayer[],
    size: r.size,
  });
  const put = db.transaction((image: Parameters<ImageStore['put']>[0]) => {
    const m = image.manifest;
    q.putManifest.run(m.digest, m.configDigest, JSON.stringify(m.config), JSON.stringify(m.layers), m.size);
    q.putImage.run(image.name, m.digest, image.indexDigest, image.pulledAt);
    if (image.tag !== null) q.putTag.run(image.name, image.tag, m.digest);
  });
  return {
    list() {
      const tags = new Map<string, string[]>();
      for (const t of q.tags.all() as { name: string; tag: string; digest: string }[]) {
        const key = `${t.name}@${t.digest}`;
        tags.set(key, [...(tags.get(key) ?? []), t.tag]);
      }
      return (q.list.all() as Row[]).map((r) => {
        const m = toManifest(r);
        return { name: r.name, tags: tags.get(`${r.name}@${r.digest}`) ?? [], digest: m.digest, configDigest: m.configDigest, config: m.config, layers: m.layers, size: m.size, pulledAt: r.pulled_at };
      });
    },
    put: (image) => put(image),
    untag: (name, tag) => void q.untag.run(name, tag),
    removeImage: (name, digest) => void q.removeImage.run(name, digest),
    manifests: () => (q.manifests.all() as Omit<Row, 'name' | 'pulled_at'>[]).map(toManifest),
    referenced() {
      const manifests = new Set<string>();
      const indexes = new Set<string>();
      for (const r of q.imageDigests.all() as { digest: string; index_digest: string | null }[]) {
        manifests.add(r.digest);
        if (r.index_digest) indexes.add(r.index_digest);
      }
      for (const r of q.heldDigests.all() as { digest: string }[]) manifests.add(r.digest);
      return { manifests, indexes };
    },
    deleteManifest: (digest) => void q.deleteManifest.run(digest),
    holdersOf: (digest) => (q.holdersOf.all(digest) as { holder: string }[]).map((r) => r.holder),
    hasManifest: (digest) => q.hasManifest.get(digest) !== undefined,
    retain: (digest, holder) => void q.retain.run(holder, digest),
    release: (holder) => void q.release.run(holder),
  };
}
