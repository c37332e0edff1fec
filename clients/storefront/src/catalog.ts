/** Browsing: the catalog's active products, a page at a time. */
import { gql, type ApolloClient } from '@apollo/client';

export interface Product {
  id: string;
  name: string;
  description: string;
  /** Minor units of `currency`. */
  price: number;
  currency: string;
}

export interface ProductPage {
  products: Product[];
  totalCount: number;
  nextCursor: string | null;
}

const productsQuery = gql`
  query Products($first: Int!, $after: String) {
    products(first: $first, after: $after) {
      totalCount
      edges { node { id name description price currency } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

interface ProductsData {
  products: {
    totalCount: number;
    edges: { node: Product }[];
    pageInfo: { hasNextPage: boolean; endCursor: string | null };
  };
}

export async function productPage(client: ApolloClient, after: string | null, first = 12): Promise<ProductPage> {
  const result = await client.query<ProductsData>({ query: productsQuery, variables: { first, after } });
  const page = result.data!.products;
  return {
    products: page.edges.map((edge) => edge.node),
    totalCount: page.totalCount,
    nextCursor: page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null,
  };
}

export function formatMoney(minorUnits: number, currency: string): string {
  return new Intl.NumberFormat('en', { style: 'currency', currency }).format(minorUnits / 100);
}
