// Lets child processes spawned by tests require lib/*.ts directly (the hook lives in lib/: loader workers use it too).
require('../lib/register-ts.js');
