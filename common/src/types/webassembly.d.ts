// Node has the WebAssembly global, but TypeScript declares it only in the DOM/worker libs, which
// would also bring browser globals in. Just the part MedMesh (and PGlite's option types) use.
declare namespace WebAssembly {
  // eslint-disable-next-line @typescript-eslint/no-extraneous-class
  class Module {
    private constructor();
  }
  function compile(bytes: ArrayBufferView | ArrayBuffer): Promise<Module>;
}
