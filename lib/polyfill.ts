/**
 * `using` needs Symbol.dispose. Node 20 defines it in its main realm, but not
 * in every realm (vm contexts such as jest's, early 20.x releases); there the
 * well-known symbols are installed, as TC39's proposal specifies them.
 */
const symbols = Symbol as unknown as { dispose?: symbol; asyncDispose?: symbol };
if (typeof symbols.dispose !== 'symbol') {
  Object.defineProperty(Symbol, 'dispose', { value: Symbol.for('Symbol.dispose') });
}
if (typeof symbols.asyncDispose !== 'symbol') {
  Object.defineProperty(Symbol, 'asyncDispose', { value: Symbol.for('Symbol.asyncDispose') });
}

export {};
