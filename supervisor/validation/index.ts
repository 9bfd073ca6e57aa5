// Names, field checks and numeric limits: the one module auraed, init, guest, the SDK and aer validate with.
// names.ts and ranges.ts are pure (the SDK and aer bundle them); fields.ts builds auraed's INVALID_ARGUMENT errors.
export {
  CELL_PATH_FORM,
  cellPathProblem,
  DNS_LABEL,
  DNS_LABEL_FORM,
  DNS_LABEL_RULE,
  executableNameProblem,
  expectedForm,
  fieldProblem,
  isCellPath,
  isDnsLabel,
  isNodePath,
  isPathWithin,
  labelProblem,
  MAX_CELL_DEPTH,
  MAX_NODE_DEPTH,
  MAX_PATH_CHARS,
  NODE_NAME_FORM,
  NODE_PATH,
  NODE_PATH_FORM,
  shown,
  vmNameProblem,
} from './names';
export { type PlainMessage } from './plain';
export { DEFAULTS, RANGES, rangeText } from './ranges';
export { checkInt, checkLabel, checkRequired, checkText, invalid, utf8Bytes } from './fields';
