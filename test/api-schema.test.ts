import { readFileSync } from 'node:fs';
import {
  buildClientSchema,
  buildSchema,
  getIntrospectionQuery,
  getNamedType,
  getNullableType,
  type IntrospectionQuery,
  isInterfaceType,
  isNonNullType,
  isObjectType,
  printSchema,
} from 'graphql';
import { generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { startGateway } from '../gateway/server.ts';
import { nodeTypes } from '../platform/graphql/global-ids.ts';
import { GatewayIdentitySigner } from '../platform/identity/gateway-identity.ts';
import { signingAlgorithm } from '../platform/identity/keys.ts';
import { apiSchemaPath, composeSupergraph, supergraphPath } from '../scripts/compose.ts';
import { graphql } from './support/graphql.ts';

const committed = readFileSync(apiSchemaPath, 'utf8');

describe('the committed API schema (schema/api.graphql, for client tooling)', () => {
  it('is committed as composed: run `npm run compose` after changing a subgraph schema', () => {
    expect(committed).toBe(composeSupergraph().apiSchemaSdl);
  });

  it('is what the gateway serves: its introspection prints to the same schema', async () => {
    const { privateKey } = await generateKeyPair(signingAlgorithm);
    // Loading the supergraph calls no subgraph: none runs here.
    const gateway = await startGateway({
      supergraphSdl: readFileSync(supergraphPath, 'utf8'),
      port: 0,
      host: '127.0.0.1',
      identitySigner: new GatewayIdentitySigner(privateKey),
      production: false,
    });
    try {
      const response = await graphql<IntrospectionQuery>(gateway.url, { query: getIntrospectionQuery() });
      expect(response.errors).toBeUndefined();
      expect(printSchema(buildClientSchema(response.data!))).toBe(printSchema(buildSchema(committed)));
    } finally {
      await gateway.stop();
    }
  });

  it('shows no federation machinery: no join__/link__ types, _entities, _service, _Any or federation directives', () => {
    for (const internal of ['join__', 'link__', 'federation__', '_entities', '_service', '_Any', '_Entity', '@key', '@link', '@shareable', '@inaccessible', '@cost', '@listSize']) {
      expect(committed, internal).not.toContain(internal);
    }
  });

  it('keeps the descriptions clients read in their tools', () => {
    expect(committed).toContain('Places an order for the signed-in customer');
  });

  it("has what the Relay compiler needs: a Node interface with nodeId: ID!, node(id: ID!) with that one argument, and the entity types implementing Node", () => {
    const schema = buildSchema(committed);
    const node = schema.getType('Node');
    expect(isInterfaceType(node)).toBe(true);
    if (!isInterfaceType(node)) return;
    const nodeId = node.getFields().nodeId!;
    expect(isNonNullType(nodeId.type) && getNullableType(nodeId.type).toString()).toBe('ID');

    const nodeField = schema.getQueryType()!.getFields().node!;
    expect(nodeField.args.map((arg) => `${arg.name}: ${arg.type.toString()}`)).toEqual(['id: ID!']);
    expect(getNamedType(nodeField.type)).toBe(node);
    const nodesField = schema.getQueryType()!.getFields().nodes!;
    expect(nodesField.type.toString()).toBe('[Node]!');

    for (const typeName of nodeTypes) {
      const type = schema.getType(typeName);
      expect(isObjectType(type) && type.getInterfaces().includes(node), typeName).toBe(true);
    }
  });
});
