// Stands in for @grpc/proto-loader (and protobufjs under it) in the bundles: grpc-js requires it only inside the
// functions that serve channelz and ORCA (grpc-js channelz.js, orca.js), which aurae does not serve. Saves
// ~180 KB of JavaScript in every bundle (image/bundle/options.ts).
'use strict';
exports.loadSync = function loadSync() {
  throw new Error('@grpc/proto-loader is not in the aurae bundles (image/bundle/stubs): channelz and ORCA are not served');
};
