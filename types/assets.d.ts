// Text imports (`import x from "./file.yaml" with { type: "text" }`), supported by Bun and Deno.
declare module "*.yaml" {
  const text: string;
  export default text;
}
