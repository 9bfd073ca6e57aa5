// @peculiar/x509 registers its algorithm providers with tsyringe, which refuses to load unless a
// `reflect-metadata`-style API exists on Reflect. tsyringe only calls defineMetadata, getMetadata and
// getOwnMetadata, so this minimal store stands in for the full polyfill package (not a dependency here).
// It must be imported before @peculiar/x509; ESM evaluates imports in order, and so does the esbuild bundle.

type MetadataKey = unknown;
type MemberKey = string | symbol | undefined;

const store = new WeakMap<object, Map<MemberKey, Map<MetadataKey, unknown>>>();

function ownMap(target: object, property: MemberKey, create: boolean): Map<MetadataKey, unknown> | undefined {
  let byProperty = store.get(target);
  if (!byProperty) {
    if (!create) return undefined;
    byProperty = new Map();
    store.set(target, byProperty);
  }
  let entries = byProperty.get(property);
  if (!entries && create) {
    entries = new Map();
    byProperty.set(property, entries);
  }
  return entries;
}

interface ReflectMetadataApi {
  defineMetadata(key: MetadataKey, value: unknown, target: object, property?: MemberKey): void;
  getOwnMetadata(key: MetadataKey, target: object, property?: MemberKey): unknown;
  getMetadata(key: MetadataKey, target: object, property?: MemberKey): unknown;
}

const api: ReflectMetadataApi = {
  defineMetadata(key, value, target, property) {
    ownMap(target, property, true)!.set(key, value);
  },
  getOwnMetadata(key, target, property) {
    return ownMap(target, property, false)?.get(key);
  },
  getMetadata(key, target, property) {
    // Walk the prototype chain like reflect-metadata does.
    for (let t: object | null = target; t; t = Object.getPrototypeOf(t) as object | null) {
      const entries = ownMap(t, property, false);
      if (entries?.has(key)) return entries.get(key);
    }
    return undefined;
  },
};

const reflect = Reflect as unknown as Partial<ReflectMetadataApi>;
if (typeof reflect.getMetadata !== 'function') Object.assign(Reflect, api);
